"""``inhouse store migrate --to postgresql://…``: copy an embedded install into an empty PostgreSQL database.

What is copied, values unchanged (ids, times, JSON text, hashes): users, groups, memberships, API keys (their
hashes), token usage, conversations, stored responses (and the labels of answers), support sessions and calendar
events from ``inhouse.db``;
every audit record and the signed head from ``audit.db``/``audit.head``; collections, access lists, documents with
their bytes, chunks and vectors from ``kb.db``. All of it in one PostgreSQL transaction: the target gets everything
or nothing. (The requests/minute windows are not copied: the embedded install keeps them in memory.)

Refusals, before anything is written: a target that already holds inhouse data (the copy never merges), and a
source audit chain that does not verify (its break would be carried over silently). Afterwards the chain is
verified again, read back from PostgreSQL with the same key (``audit.key``, which every node needs), and every
table's row count is compared with the source.

One value is not copied unchanged: U+0000 in text, which SQLite holds (a conversation titled through the API) and
PostgreSQL's ``text`` cannot. It is copied as U+FFFD, and the number of values changed is said per table: refusing
would leave such an install no way to move but editing its database by hand. An audit record is the exception: its
hash covers its text, so one holding U+0000 is refused, naming it (inhouse writes none: JSON escapes the character,
and paths holding it are refused at the edge).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from inhouse.errors import Conflict, InvalidRequest
from inhouse.governance.audit.chain import FIELDS, VerifyReport
from inhouse.store.sqlite.database import connect

if TYPE_CHECKING:
    from inhouse.config import Settings

# inhouse.db tables copied, with their columns (the PostgreSQL tables have the same ones).
_INHOUSE = {
    "users": ("id", "name", "display_name", "role", "disabled", "created_at"),
    "user_groups": ("id", "name", "created_at"),
    "group_members": ("group_id", "user_id", "added_at"),
    "api_keys": ("id", "name", "prefix", "secret_hash", "role", "user_id", "created_at", "expires_at", "revoked_at",
                 "last_used_at", "rpm_limit", "tokens_per_day_limit", "scopes"),
    "key_usage": ("key_id", "day", "tokens", "requests"),
    "conversations": ("id", "owner", "title", "model", "messages", "created_at", "updated_at"),
    "responses": ("id", "owner", "model", "previous_id", "messages", "input_items", "body", "created_at", "label"),
    "answer_labels": ("digest", "label_rank", "created_at"),
    "support_sessions": ("id", "owner", "collections", "status", "misses", "handoff", "messages", "created_at",
                         "updated_at"),
    "schedule_events": ("id", "owner", "uid", "title", "start_utc", "end_utc", "tz", "all_day", "location",
                        "description", "attendees", "status", "created_at", "updated_at"),
}
_BOOLEAN = {"disabled", "all_day"}  # 0/1 in SQLite, boolean in PostgreSQL
_AUDIT_COLUMNS = (*FIELDS, "hash")
_TARGET_TABLES = (*_INHOUSE, "audit_records", "kb_collections", "kb_documents")
_NUL, _REPLACEMENT = "\x00", "\ufffd"

Row = tuple[Any, ...]


@dataclass
class CopyReport:
    copied: dict[str, int] = field(default_factory=dict)
    target_counts: dict[str, int] = field(default_factory=dict)
    audit: VerifyReport | None = None
    nul_replaced: dict[str, int] = field(default_factory=dict)  # per table: text values copied with U+FFFD for U+0000

    def replace_nul(self, table: str, row: Row) -> Row:
        """``row`` with U+0000 in its text as U+FFFD (PostgreSQL's text cannot hold it), counted."""
        changed = sum(isinstance(v, str) and _NUL in v for v in row)
        if not changed:
            return row
        self.nul_replaced[table] = self.nul_replaced.get(table, 0) + changed
        return tuple(v.replace(_NUL, _REPLACEMENT) if isinstance(v, str) else v for v in row)

    def copied_line(self, table: str) -> str:
        """What the migrate command says of ``table``."""
        n = self.nul_replaced.get(table, 0)
        return f"{table}: {self.copied[table]}" + (
            f" ({n} text value{'s' if n != 1 else ''} held U+0000, copied with U+FFFD in its place)" if n else "")

    @property
    def ok(self) -> bool:
        return (self.audit is not None and self.audit.ok
                and all(self.target_counts.get(t) == n for t, n in self.copied.items()))


def copy_to_postgres(settings: Settings, url: str, *, say: Callable[[str], None] = lambda _: None) -> CopyReport:
    """Copy the embedded install of ``settings.data_dir`` into the empty PostgreSQL database at ``url``."""
    from inhouse.store.postgres.database import PostgresDatabase, migrate, redact_url
    from inhouse.store.postgres.schema import AUDIT, INHOUSE
    from inhouse.store.sqlite.audit import open_sqlite_audit_log
    from inhouse.store.sqlite.inhouse_db import open_inhouse_db

    if not settings.db_path.exists():
        raise InvalidRequest(f"No embedded install at {settings.data_dir} (no inhouse.db).", param="data_dir")
    # A file written by an older release gets its pending steps first, so every table copied exists (as a server
    # start would do; the server is stopped).
    open_inhouse_db(settings.db_path).close()
    audit_path = settings.data_dir / "audit.db"
    key_path = settings.data_dir / "audit.key"
    source_log = open_sqlite_audit_log(audit_path, key_path=key_path) if audit_path.exists() else None
    try:
        if source_log is not None:
            before = source_log.verify()
            if not before.ok:
                raise Conflict(f"The audit chain of {audit_path} does not verify ({before.kind} at record "
                               f"{before.first_broken_seq}: {before.message}); run `inhouse audit verify` and resolve "
                               "it first: a copy would carry the break over.")
            say(f"source audit chain verified: {before.records} records")
        pg = PostgresDatabase(url, max_size=2)
        try:
            migrate(pg, "inhouse", INHOUSE)
            migrate(pg, "audit", AUDIT)
            report = _copy(settings, pg, source_log, say)
            report.target_counts = _counts(pg, report.copied)
            from inhouse.governance.audit.log import AuditLog
            from inhouse.store.postgres.audit import PostgresAuditStore

            report.audit = AuditLog(PostgresAuditStore(pg), key_path=key_path).verify()
        finally:
            pg.close()
    finally:
        if source_log is not None:
            source_log.close()
    say(f"copied into {redact_url(url)}")
    return report


def _copy(settings: Settings, pg: Any, source_log: Any, say: Callable[[str], None]) -> CopyReport:
    from inhouse.kb.index.postgres.schema import migrate_index

    report = CopyReport()
    kb = _open_index(settings)
    try:
        if kb is not None:
            migrate_index(pg, kb.dim)
        with pg.transaction() as conn:
            _refuse_non_empty(conn, pg.url)
            src = connect(settings.db_path, readonly=True)
            try:
                for table, cols in _INHOUSE.items():
                    rows = (report.replace_nul(table, tuple(bool(r[c]) if c in _BOOLEAN else r[c] for c in cols))
                            for r in src.execute(f"SELECT {', '.join(cols)} FROM {table}"))
                    report.copied[table] = _insert(conn, table, cols, rows)
                    say(report.copied_line(table))
            finally:
                src.close()
            if source_log is not None:
                _copy_audit(conn, source_log, report)
                say(f"audit_records: {report.copied['audit_records']}")
            if kb is not None:
                from inhouse.kb.index.postgres.load import load_index
                from inhouse.kb.index.sqlite.export import export_index

                with export_index(kb) as export:
                    for table, n in load_index(conn, export, report.replace_nul).items():
                        report.copied[table] = n
                        say(report.copied_line(table))
    finally:
        if kb is not None:
            kb.close()
    return report


def _open_index(settings: Settings) -> Any:
    if not settings.kb_path.exists():
        return None
    from inhouse.kb.index.sqlite import SqliteIndexStore

    conn = sqlite3.connect(f"file:{settings.kb_path}?mode=ro", uri=True)
    try:
        dim = int(conn.execute("SELECT value FROM kb_meta WHERE key = 'dim'").fetchone()[0])
    finally:
        conn.close()
    return SqliteIndexStore(settings.kb_path, dim=dim, resident_vectors=False)


def _refuse_non_empty(conn: Any, url: str) -> None:
    from inhouse.store.postgres.database import redact_url

    held = {}
    for table in _TARGET_TABLES:
        exists = conn.execute("SELECT to_regclass(%s) AS t", (table,)).fetchone()["t"]
        if exists is not None:
            n = int(conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"])
            if n:
                held[table] = n
    if held:
        listed = ", ".join(f"{n} {t}" for t, n in held.items())
        raise Conflict(f"The database at {redact_url(url)} already holds inhouse data ({listed}). `inhouse store "
                       "migrate` copies into an empty database only; it never merges two installs.")


def _insert(conn: Any, table: str, cols: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert in batches; the number of rows."""
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
    n = 0
    it = iter(rows)
    while batch := list(islice(it, 1000)):
        conn.cursor().executemany(sql, batch)
        n += len(batch)
    return n


def _copy_audit(conn: Any, source_log: Any, report: CopyReport) -> None:
    """Records verbatim (the hashes cover their stored text), then the signed head as it was."""
    rows = (_without_nul(tuple(r[c] for c in _AUDIT_COLUMNS)) for r in source_log.store.rows(_all_records()))
    report.copied["audit_records"] = _insert(conn, "audit_records", _AUDIT_COLUMNS, rows)
    head = source_log.store.read_head()
    if head is not None:
        conn.execute("INSERT INTO audit_head (id, head) VALUES (1, %s)", (head,))


def _without_nul(row: Row) -> Row:
    """An audit record as it is, or refused: its hash covers its text, so U+0000 cannot be replaced in it."""
    if any(isinstance(v, str) and _NUL in v for v in row):
        seq = row[_AUDIT_COLUMNS.index("seq")]
        raise Conflict(f"Audit record {seq} holds a NUL character (U+0000), which PostgreSQL cannot store, and "
                       "changing it would break the chain: this install cannot be moved (nothing was copied).")
    return row


def _all_records() -> Any:
    from inhouse.governance.audit.store import RecordQuery

    return RecordQuery()


def _counts(pg: Any, tables: dict[str, int]) -> dict[str, int]:
    return {t: int(pg.scalar(f"SELECT count(*) FROM {t}")) for t in tables}
