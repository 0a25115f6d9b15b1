"""What every CLI command shares: settings from flags, error → exit code translation, the console."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from inhouse.config import Settings, load_settings, settings_problems
from inhouse.errors import (
    AuthenticationFailed,
    InhouseError,
    InvalidRequest,
    InvalidSettings,
    NotFound,
    Overloaded,
    PermissionDenied,
    StorageFull,
    StorageReadOnly,
    Unavailable,
    is_busy,
    is_read_only,
    is_storage_full,
    storage_read_only,
    store_busy,
)
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.hardware.probe import HardwareProbe, ProbeReport
    from inhouse.services import Services

# No emoji codes: a name holding ":warning:" is shown as typed, not as the symbol (nothing here prints one on purpose).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

# Who a command acts as without ``--key``: whoever may open the data directory administers it.
CLI_ACTOR = Actor(key_id="key_cli", name="command line (local admin)", role="admin")


# Control characters but tab and line feed: ESC would let a name drive the admin's terminal (colours, titles,
# hyperlinks, cursor moves); they are shown as U+FFFD instead.
_TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def esc(value: object) -> str:
    """``value`` (a name, title, path, snippet, answer or message: anything from the store, a user, a model or a
    server) inside a Rich markup string. Rich reads every ``[…]`` of a printed string as a tag: a member's key named
    ``[/] laptop`` would crash the admin's listing (MarkupError), one named ``[link=…]`` would be styled."""
    text = _TERMINAL_CONTROLS.sub("\ufffd", str(value))
    # escape() doubles a trailing backslash (so a tag after it still opens); before plain text Rich would print both:
    # an empty tag after it makes the pair one backslash wherever the value stands (\\fileserver\share\).
    return escape(text) + ("[dim][/dim]" if text.endswith("\\") else "")


def cells(*values: object) -> list[Text]:
    """A table row's values as cells shown as written (a cell's string is read as markup too); a ``Text`` given
    (a styled status) is kept."""
    return [v if isinstance(v, Text) else Text(_TERMINAL_CONTROLS.sub("\ufffd", str(v))) for v in values]

# Exit codes (documented in docs/operations.md, "CLI exit codes"): 1 generic failure, 2 usage/bad input (typer's own
# convention; also an unusable path), 3 not found, 4 auth, 5 busy/unavailable (a read-only disk too), 6 disk full.
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
def translate_errors(data_dir: Path | None = None) -> Iterator[None]:
    """Turn domain errors, and the OS's or SQLite's errors that reach a command (a data directory that is a file, a
    missing output directory, a full disk), into one red line and a non-zero exit, never a traceback. ``data_dir``:
    the command's ``--data-dir`` (None: the configured one), whose disk a database error is checked against."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except InhouseError as exc:
        _report(exc)
    except Exception as exc:
        if not isinstance(exc, OSError) and not _is_database_error(exc):
            raise  # anything else is a bug: its traceback is what gets it fixed
        _report(domain_error(exc, _resolved(data_dir)))


def _report(error: InhouseError) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {esc(error.message)}", highlight=False)  # it may quote a name or path
    raise typer.Exit(exit_code_for(error)) from None


def _is_database_error(exc: BaseException) -> bool:
    """An error of the stdlib sqlite3 or of apsw (the knowledge index's SQLite), told by module: neither is imported."""
    return any(cls.__module__ in ("sqlite3", "apsw") for cls in type(exc).__mro__)


def _resolved(data_dir: Path | None) -> Path | None:
    try:
        return settings_from(data_dir).data_dir
    except Exception:  # the settings themselves are wrong: no disk to look at then
        return None


_NEARLY_FULL_BYTES = 1 << 20
# An OSError for one of these means the path given (or the data directory) is wrong, not the machine: bad input.
_BAD_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM,
                              errno.ENAMETOOLONG, errno.ELOOP})


def domain_error(exc: BaseException, data_dir: Path | None = None) -> InhouseError:
    """What an OSError or an SQLite error (stdlib sqlite3 or apsw) escaping a command means, as a domain error whose
    message names the path or the database. ``data_dir`` is where the databases are: SQLite reports a full or
    read-only disk as "disk I/O error", so that disk itself is looked at."""
    if isinstance(exc, OSError):
        named = _named(exc)
        if is_storage_full(exc):  # not is_storage_full(exc, data_dir): a bad path on a nearly full disk is a bad path
            return StorageFull(f"{named}the disk is full; free some space and run the command again.")
        if is_read_only(exc, data_dir):
            return StorageReadOnly(f"{named}the file system cannot be written (read-only).")
        if exc.errno in _BAD_PATH_ERRNOS:
            return InvalidRequest(_bad_path(exc) or f"{named}{exc.strerror}")
        return InhouseError(f"{named}{exc.strerror or exc}")
    where = f"the database in {data_dir}" if data_dir is not None else "the database"
    if is_storage_full(exc, data_dir):
        # A command may write a database elsewhere (a copy, an export): the data directory is named only when its
        # own disk is the full one.
        full_here = data_dir is not None and _nearly_full(data_dir)
        return StorageFull(f"{where if full_here else 'a database'} cannot be written: the disk is full ({exc}); free "
                           "some space and run the command again.")
    if is_read_only(exc, data_dir):
        return storage_read_only(where)
    if is_busy(exc):
        return store_busy(where)
    return InhouseError(f"{where} cannot be opened or written: {exc}")


def _nearly_full(directory: Path) -> bool:
    """Whether the disk holding ``directory`` has less than 1 MB free (``is_storage_full``'s own measure)."""
    try:
        return shutil.disk_usage(directory).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def _named(exc: OSError) -> str:
    """``"PATH: "`` for the start of a message, or nothing when the OS named no path (a write to an open file)."""
    if exc.filename is None:
        return ""
    if exc.filename2 is not None:  # a rename or a link
        return f"{os.fsdecode(exc.filename)} -> {os.fsdecode(exc.filename2)}: "
    return f"{os.fsdecode(exc.filename)}: "


def _bad_path(exc: OSError) -> str | None:
    """What is wrong with the path of a "no such file", "not a directory" or "exists" error, named where it goes
    wrong: the OS names the path asked for (DATA_DIR/hardware), the user needs the one they gave (DATA_DIR, a file)."""
    if exc.filename is None or exc.filename2 is not None or exc.errno not in (errno.ENOTDIR, errno.EEXIST,
                                                                              errno.ENOENT):
        return None
    path = Path(os.fsdecode(exc.filename)).absolute()
    try:
        for part in (*reversed(path.parents), path):
            if not part.exists():
                return f"{part}: no such file or directory" if part == path else f"{part}: no such directory"
            if not part.is_dir():
                return f"{part} is a file, not a directory"
    except OSError:  # a parent that cannot be searched: the OS's own words then
        return None
    return None


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
    try:
        settings = load_settings(**overrides)
    except (ValidationError, tomllib.TOMLDecodeError, OSError) as exc:  # one red line and exit 2, never a traceback
        _report(settings_error(exc))
    for key, value in server.items():
        if value is not None:
            setattr(settings.server, key, value)
    return settings


def settings_error(exc: Exception) -> InvalidSettings:
    """What a failed ``load_settings`` means, naming the setting or the ``INHOUSE_CONFIG`` file."""
    toml = os.environ.get("INHOUSE_CONFIG")
    if isinstance(exc, ValidationError):
        return InvalidSettings(settings_problems(exc))
    if isinstance(exc, tomllib.TOMLDecodeError):
        return InvalidSettings(f"{toml} (INHOUSE_CONFIG) is not valid TOML: {exc}.")
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InvalidSettings(f"INHOUSE_CONFIG names {toml}, which cannot be read ({why}).")


def open_services(settings: Settings, probe: HardwareProbe | None = None) -> Services:
    """``probe``: the one already asked (serve asks before the services: an answer that could not be cached,
    a probe child that gave none, is then not probed for again)."""
    from inhouse.bootstrap import build_services

    return build_services(settings, probe=probe)


@contextlib.contextmanager
def services_for(data_dir: Path | None) -> Iterator[Services]:
    """The services of a data directory for one command: errors become one red line, and they are closed."""
    with translate_errors():
        settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        services = open_services(settings)
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
    err_console.print(f"[bold red]error:[/] {esc(message)}", highlight=False)  # it may quote a name or path
    raise typer.Exit(code)


def server_error(url: str, exc: Exception) -> InhouseError:
    """What an httpx error on the way to ``--url`` means, in the words every client command uses: a URL that is no
    server's (exit 2), or a server that cannot be reached or stopped answering (exit 5)."""
    import httpx

    why = str(exc) or type(exc).__name__  # a timeout's message is empty
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):  # InvalidURL is no HTTPError: bad input
        return InvalidRequest(f"--url {url!r} is not a server's URL (http://host:port): {why}")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):  # also TLS spoken to a plain HTTP port
        return Unavailable(f"Cannot reach {url}: {why}.")
    return Unavailable(f"The connection to {url} failed: {why}.")


def quiet_library_logs() -> None:
    """Outside `inhouse serve` (which configures its own log) nothing configures logging, so a library's warnings
    reach stderr raw: psycopg's pool logs every failed connection attempt before the command's one red line."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def is_tty() -> bool:
    return sys.stdout.isatty()


def check_output_path(output: Path) -> None:
    """Refuse an output path that cannot be written (exit 2), before the work whose result it is to hold (minutes
    of model work were computed and then lost to a traceback)."""
    folder = output.absolute().parent
    if output.is_dir():
        fail(f"--output {output} is a directory; name a file.")
    if not folder.is_dir():
        fail(f"--output: the directory {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        fail(f"--output {output} cannot be written (no permission).")
