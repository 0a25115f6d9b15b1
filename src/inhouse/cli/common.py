"""What every CLI command shares: settings from flags, error → exit code translation, the console."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from inhouse.config import Settings, load_settings
from inhouse.errors import (
    AuthenticationFailed,
    InhouseError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    StorageFull,
    Unavailable,
)

if TYPE_CHECKING:
    from inhouse.hardware.probe import HardwareProbe, ProbeReport
    from inhouse.services import Services

console = Console()
err_console = Console(stderr=True)

# Exit codes: 1 generic failure, 2 usage/bad input (typer's own convention), 3 not found, 4 auth, 5 busy/unavailable,
# 6 disk full.
_EXIT_CODES: list[tuple[type[InhouseError], int]] = [
    (StorageFull, 6),
    (NotFound, 3),
    (AuthenticationFailed, 4),
    (PermissionDenied, 4),
    (Overloaded, 5),
    (Unavailable, 5),
    (InvalidRequest, 2),
]


def exit_code_for(exc: InhouseError) -> int:
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn domain errors into one red line and a non-zero exit, never a traceback."""
    try:
        yield
    except InhouseError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


@contextlib.contextmanager
def stop_signals(first: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C or SIGTERM (``kill``, systemd stopping a unit) inside the block calls ``first`` (a command asks its
    work to stop where it can say exactly what it did); another one stops it at once (KeyboardInterrupt). By
    default Ctrl-C stops wherever the code stands, and SIGTERM ends the process without a word."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        yield
        return
    asked = False

    def stop(signum: int, frame: object) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True
        first()

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def settings_from(data_dir: Path | None = None, **server: Any) -> Settings:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = load_settings(**overrides)
    for key, value in server.items():
        if value is not None:
            setattr(settings.server, key, value)
    return settings


def open_services(settings: Settings) -> Services:
    from inhouse.bootstrap import build_services

    return build_services(settings)


@contextlib.contextmanager
def services_for(data_dir: Path | None) -> Iterator[Services]:
    """The services of a data directory for one command: errors become one red line, and they are closed."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            yield services
        finally:
            services.close()


def current_probe(probe: HardwareProbe, *, refresh: bool = False) -> ProbeReport:
    """The probe's answer; when it has to run (first time on this machine and build, or ``refresh``), with a
    spinner saying why the command pauses."""
    report = None if refresh else probe.cached()
    if report is None:
        with err_console.status("Probing this machine and its llama.cpp build (once per machine and build: "
                                "a few seconds)…"):
            report = probe.current(force=refresh)
    return report


DataDirOption = typer.Option(
    None, "--data-dir", envvar="INHOUSE_DATA_DIR", help="Data directory (database, model cache).",
    show_default=False,
)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def is_tty() -> bool:
    return sys.stdout.isatty()
