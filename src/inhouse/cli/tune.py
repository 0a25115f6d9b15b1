"""`inhouse tune MODEL`: measure this machine, sweep the engine settings, write a tuned profile + report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from inhouse.cli.common import (
    DataDirOption,
    console,
    current_probe,
    err_console,
    esc,
    fail,
    open_services,
    settings_from,
    translate_errors,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def tune(
        model: str = typer.Argument(None, help="Model to tune (see `inhouse models list`)."),
        concurrency: int = typer.Option(8, "--concurrency", "-c", help="Streams you expect at once."),
        budget_s: float = typer.Option(600.0, "--budget-s", help="Stop sweeping after this many seconds."),
        itl_p95_bound_ms: float = typer.Option(
            None, "--itl-p95-bound-ms",
            help="Single-stream inter-token p95 bound (default: 1.5 × that of the default settings)."),
        formats: str = typer.Option("q8_0", "--formats",
                                    help="Weight formats to try besides the model's own (comma-separated; "
                                    "'' for none). q4_0 is faster on some CPUs but loses precision."),
        repeats: int = typer.Option(2, "--repeats", min=1, max=10, help="Runs per measurement (best kept)."),
        check: bool = typer.Option(False, "--check", help="Only validate the existing profiles and exit."),
        quiet_wait_s: float = typer.Option(
            20.0, "--quiet-wait-s", min=0,
            help="Before each measurement wait up to this long for other processes to go quiet."),
        data_dir: Path = DataDirOption,
    ) -> None:
        """Detect the CPU, measure memory bandwidth, sweep threads / batch sizes / KV cache / attention /
        weight format with the real engine, and write the best settings as a tuned profile that
        `inhouse serve` applies automatically."""
        settings = settings_from(data_dir)
        if check:
            _check(settings.data_dir)
            return
        if not model:
            fail("Name the model to tune, e.g. `inhouse tune smollm2-135m` (or pass --check).")
        from inhouse.engine.backends.llama_cpp.quantize import QUANT_FTYPES, quantize_model
        from inhouse.hardware.cpu import detect_cpu, measure_bandwidth, wait_for_quiet
        from inhouse.hardware.weights import proven_paths, resolve_engine_settings
        from inhouse.models.tuning.measure import measure_engine
        from inhouse.models.tuning.sweep import Trial, TuneOptions, Tuner

        fmts = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
        bad = [f for f in fmts if f not in QUANT_FTYPES]
        if bad:
            fail(f"Unknown weight format(s) {', '.join(bad)}; use {', '.join(QUANT_FTYPES)}.")
        with translate_errors(settings.data_dir):
            services = open_services(settings)
            try:
                spec = services.registry.resolve(model, require_present=True)
                report = current_probe(services.probe)
                engine_settings, choice = resolve_engine_settings(settings.engine, report)
                paths = proven_paths(report)
                console.print(f"[bold]Weight buffers[/] {choice.value} ({esc(choice.reason)}); candidates: "
                              f"{esc(', '.join(paths))}", highlight=False)
                options = TuneOptions(concurrency=concurrency, budget_s=budget_s,
                                      itl_p95_bound_ms=itl_p95_bound_ms, formats=fmts, repeats=repeats,
                                      weight_paths=paths)
                cpu = detect_cpu()
                console.print(f"[bold]CPU[/] {esc(cpu.summary())}  (signature {esc(cpu.signature)})",
                              highlight=False)
                with console.status("Measuring memory read bandwidth (512 MB, best of 5)…"):
                    bandwidth = measure_bandwidth()
                console.print(f"[bold]Memory read bandwidth[/] {bandwidth.gb_s:.1f} GB/s")
                console.print(f"Tuning {esc(spec.name)} ({spec.size_bytes / 1e6:.0f} MB {esc(spec.quantization)}) for "
                              f"{concurrency} concurrent streams, budget {budget_s:.0f} s.")
                assert services.profiles is not None
                tuner = Tuner(services.registry, services.profiles, engine_settings, measure=measure_engine,
                              quantize=lambda src, dst, fmt: quantize_model(src, dst, fmt),
                              wait_quiet=lambda: wait_for_quiet(max_wait_s=quiet_wait_s))
                with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                              TimeElapsedColumn(), console=console, transient=True) as bar:
                    task = bar.add_task("starting", total=budget_s)

                    def progress(message: str, trial: Trial | None) -> None:
                        if trial is None:
                            bar.update(task, description=esc(message))
                            return
                        m = trial.measurement
                        mark = "[green]kept[/]" if trial.kept else (f"[red]refused: {esc(trial.refused)}[/]"
                                                                     if trial.refused else "")
                        bar.console.print(
                            f"  {esc(f'{trial.axis:>20}')}: {esc(trial.candidate.label())}\n{'':>24}aggregate "
                            f"{m.aggregate_tok_s:6.1f} tok/s  decode {m.decode_tok_s:6.1f}  prefill "
                            f"{m.prefill_tok_s:7.1f}  ITL p95 {m.itl_p95_ms:5.1f} ms  other load "
                            f"{m.foreign_load_cores:.2f} cores  {mark}", highlight=False)
                        measured.append(trial)
                        bar.update(task, completed=min(trial.elapsed_s, budget_s),
                                   description=f"{esc(trial.axis)}: {len(measured)} settings measured")

                    measured: list[Trial] = []
                    result = tuner.tune(spec.name, cpu, bandwidth, options, progress)
                result = tuner.save(result)
            finally:
                services.close()
        _print_report(result)


def _print_report(result: object) -> None:
    from inhouse.models.tuning.sweep import TuneResult

    assert isinstance(result, TuneResult)
    d, t = result.default, result.tuned
    table = Table(title=esc(f"{result.spec.name}: default vs tuned"))
    for col in ("", "default", "tuned", "tuned ÷ default"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("decode tok/s (1 stream)", d.decode_tok_s, t.decode_tok_s),
            ("prefill tok/s", d.prefill_tok_s, t.prefill_tok_s),
            (f"aggregate tok/s ({result.options.concurrency} streams)", d.aggregate_tok_s, t.aggregate_tok_s),
            ("ITL p95, 1 stream (ms)", d.itl_p95_ms, t.itl_p95_ms)]
    for label, a, b in rows:
        table.add_row(label, f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}×" if a else "")
    console.print(table)
    console.print(f"Chosen: {esc(result.chosen.label())}", highlight=False)
    console.print(f"Why: {esc(result.profile.reason)}", highlight=False)
    console.print(f"Profile: {esc(result.profile_path)}\nReport: {esc(', '.join(str(p) for p in result.report_paths))}")
    if result.budget_exhausted:
        err_console.print("note: the time budget ran out before every setting was tried.")


def _check(data_dir: Path) -> None:
    from inhouse.hardware.cpu import detect_cpu
    from inhouse.models.tuning.profile import ProfileStore

    store = ProfileStore(data_dir / "profiles", lambda: detect_cpu().signature)
    results = store.check_all()
    if not results:
        console.print(f"No tuned profiles in {esc(store.directory)}.")
        return
    bad = 0
    for path, problem in results:
        if problem is None:
            console.print(f"[green]ok[/]   {esc(path)}", highlight=False)
        else:
            bad += 1
            console.print(f"[red]bad[/]  {esc(path)}: {esc(problem)}", highlight=False)
    if bad:
        raise typer.Exit(2)
