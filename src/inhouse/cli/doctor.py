"""`inhouse doctor`: what this machine is and which of llama.cpp's weight paths run on it (hardware/probe.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from inhouse.cli.common import DataDirOption, cells, console, current_probe, esc, settings_from, translate_errors

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.hardware.probe import ProbeReport


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        refresh: bool = typer.Option(False, "--refresh", help="Probe again instead of using the cached answer."),
        timing: bool = typer.Option(False, "--timing", help="Say how long the probe (or reading its cache) took."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole answer as JSON."),
        data_dir: Path = DataDirOption,
    ) -> None:
        """Probe the CPU, memory, bandwidth, the ISA llama.cpp can use, AMX tile permission, and whether each
        accelerated weight path really executes (each in a child process: a crash there is an answer).
        Cached per machine and llama.cpp build; the engine uses only what this proved."""
        from inhouse.bootstrap import build_probe
        from inhouse.hardware.weights import resolve_weight_buffers
        from inhouse.models.recommend import recommend_model

        settings = settings_from(data_dir)
        probe = build_probe(settings)
        with translate_errors(settings.data_dir):
            t0 = time.perf_counter()
            was_cached = not refresh and probe.cached() is not None
            report = current_probe(probe, refresh=refresh)
            elapsed = time.perf_counter() - t0
            if as_json:
                console.print_json(json.dumps(report.to_dict()))
            else:
                _print(report)
                es = settings.engine
                choice = resolve_weight_buffers(es.weight_buffers, report, force=es.force_weight_buffers)
                console.print(f"[bold]Weight buffers[/] (engine.weight_buffers={esc(es.weight_buffers)}): "
                              f"[bold]{choice.value}[/] — {esc(choice.reason)}", highlight=False)
                if settings.models.default == "auto":
                    rec = recommend_model(report)
                    console.print(f"[bold]Default model[/] {esc(rec.name)} — {esc(rec.reason)}", highlight=False)
                console.print("[bold]Capacity[/] " + esc(capacity_line(report)), highlight=False)
                console.print("[bold]Embeddings[/] " + esc(embeddings_line(settings)), highlight=False)
        if timing:
            what = ("read the cached answer" if was_cached
                    else f"probed (children + bandwidth: {report.probe_seconds:.1f} s)")
            console.print(f"doctor: {what} in {elapsed:.3f} s; cache {esc(probe.cache_path())}", highlight=False)
        plain = report.paths.get("plain")
        if plain is not None and plain.status in ("crashed", "wrong"):  # llama.cpp does not run here
            raise typer.Exit(1)


def embeddings_line(settings: Settings) -> str:
    """Which engine embeds here and why (``kb.embed_engine = auto`` runs the int8 self-test once per machine)."""
    ks = settings.kb
    if ks.embedder == "fake":
        return "kb.embedder=fake: deterministic test vectors, no model"
    from inhouse.kb.embed import engine_choice

    engine, reason = engine_choice(ks.embed_engine, cache_dir=settings.model_cache_dir)
    return f"(kb.embed_engine={ks.embed_engine}): {engine} — {reason}"


def capacity_line(report: ProbeReport) -> str:
    """The capacity model's row for this machine (docs/capacity.md): its cores, its measured bandwidth and the
    instruction sets it has. AMX counts only where the probe saw llama.cpp's AMX path run: an advertised AMX
    that crashes here gives no AMX prefill rate."""
    from inhouse.hardware.capacity import this_machine_line

    flags = [k for k, v in report.isa.items() if v and (report.amx_in_use or not k.startswith("amx"))]
    return this_machine_line(report.physical_cores, report.bandwidth_gb_s, flags)


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _print(r: ProbeReport) -> None:
    console.print(f"[bold]CPU[/] {esc(r.cpu_vendor)} {esc(r.cpu_model)}: {r.physical_cores} cores / "
                  f"{r.logical_cpus} CPUs (signature {esc(r.cpu_signature)})", highlight=False)
    measured = ("measured" if not r.bandwidth_under_load else
                f"measured while other processes used {r.bandwidth_foreign_cores:.1f} cores: likely too low, "
                "`inhouse doctor --refresh` on a quiet machine measures it again")
    console.print(f"[bold]Memory[/] {_gb(r.memory_total_bytes)} total, {_gb(r.memory_available_bytes)} available; "
                  f"read bandwidth {r.bandwidth_gb_s:.1f} GB/s ({esc(measured)})", highlight=False)
    flags = "  ".join(f"{esc(k)} {'[green]yes[/]' if v else '[dim]no[/]'}" for k, v in r.isa.items())
    console.print(f"[bold]ISA[/] {flags}")
    console.print(f"[bold]AMX tile state[/] {esc(r.amx_os.status)}: {esc(r.amx_os.detail)}", highlight=False)
    console.print(f"[bold]llama.cpp[/] llama-cpp-python {esc(r.build_version)} (build {esc(r.build_id)}); compiled "
                  f"with: {esc(r.system_info.removeprefix('CPU : ') or 'unknown')}", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, title="weight paths (each run in a child process)", title_justify="left")
    for col in ("path", "result", "weights placed in", "vs plain", "detail"):
        table.add_column(col, overflow="fold")
    for name, p in r.paths.items():
        colour = "green" if p.ok else "red"
        placed = ", ".join(f"{k} {v:.1f} MiB" for k, v in p.placed.items()) or "-"
        err = f"{p.rel_error:.1%}" if p.rel_error is not None else "-"
        table.add_row(*cells(name, Text(p.status, style=colour), placed, err, p.detail or f"{p.seconds:.2f} s"))
    console.print(table)
    console.print(f"[bold]AMX[/] {esc(r.amx_verdict())}", highlight=False)
