"""An online copy of ``kb.db`` for ``inhouse backup`` (``inhouse.store.backup``)."""

from __future__ import annotations

from pathlib import Path

from inhouse.errors import InvalidRequest


def backup_index(source: Path, dest: Path) -> None:
    """A consistent copy of the index file ``source`` into ``dest`` by SQLite's online backup API, while writers may
    be busy; then checked (integrity) and made one self-contained file. Through apsw, the library every other
    connection to this file uses: two SQLite libraries in one process do not see each other's POSIX locks."""
    import apsw

    src = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READONLY)
    out = apsw.Connection(str(dest))
    try:
        src.set_busy_timeout(30_000)
        with out.backup("main", src, "main") as b:
            b.step(-1)
        out.execute("PRAGMA journal_mode = DELETE").fetchall()
        result = out.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise InvalidRequest(f"The copy of {source.name} fails its integrity check: {result[:3]}")
    finally:
        out.close()
        src.close()
