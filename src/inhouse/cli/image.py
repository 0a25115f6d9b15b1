"""`inhouse image …`: build, verify and install air-gapped deployment bundles."""

from __future__ import annotations

from pathlib import Path

import typer

from inhouse.cli.common import (
    DataDirOption,
    console,
    err_console,
    esc,
    open_services,
    services_for,
    settings_from,
    translate_errors,
)

app = typer.Typer(no_args_is_help=True)


@app.command("build")
def build(model: str = typer.Argument(..., help="The model to bundle."),
          out: Path = typer.Option(..., "--output", "-o", help="A new directory, or a .tar / .tar.gz file."),
          extra: list[str] = typer.Option([], "--extra", help="Also bundle this installed package (and what it "
                                          "needs), e.g. a plugin. Repeatable."),
          data_dir: Path = DataDirOption) -> None:
    """Bundle the wheels of inhouse and its dependencies, the model, its tuned profile, a config and an
    install script, with a manifest of every file's sha256."""
    from inhouse.models.image import build_image

    with services_for(data_dir) as services:
        assert services.profiles is not None
        with console.status("building") as status:
            info = build_image(services.registry, services.profiles, model, out.resolve(),
                               progress=lambda m: status.update(esc(m)), extra=tuple(extra))
    console.print(f"Wrote {esc(info.path)}: {esc(info.model)}, {info.files} files, {info.bytes / 1e6:,.0f} MB.\n"
                  f"Check it with `inhouse image verify {esc(info.path)}`; install with `sh install.sh` inside it.")


@app.command("verify")
def verify(source: Path = typer.Argument(..., help="A bundle directory or tar.")) -> None:
    """Re-hash every file of a bundle against its manifest (one altered byte fails, naming the file)."""
    from inhouse.models.image import verify_image

    with translate_errors():
        n = verify_image(source)
    console.print(f"{esc(source)}: all {n} files match the manifest.")


@app.command("install")
def install(bundle: Path = typer.Argument(..., help="An unpacked bundle directory."),
            data_dir: Path = DataDirOption) -> None:
    """Verify a bundle, place its model and tuned profile in the data directory and register them
    (install.sh runs this inside the new virtualenv)."""
    from inhouse.models.image import install_image

    settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        services = open_services(settings)
        try:
            done = install_image(bundle, services.registry, services.profiles, settings.data_dir / "config.toml")
        finally:
            services.close()
    for note in done.notes:
        err_console.print(f"[bold yellow]warning:[/] {esc(note)}", highlight=False)
    console.print(f"Installed {esc(', '.join(done.names))} into {esc(settings.data_dir)}.")
