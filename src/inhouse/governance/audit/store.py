"""``AuditStore``: where the chain's rows and its signed head are kept. ``AuditLog`` (``log.py``) holds the rules.

A store keeps the stored column values of ``chain.FIELDS`` plus ``hash``, append-only, and the head as text. It
knows nothing of hashing or keys. What it must guarantee:

* ``appending()`` is one append: serialised with every other writer of the same chain (threads, processes,
  nodes), so the tail it shows is the tail the new row extends; the row and the head commit together or not at
  all. An exception inside the block rolls both back; a failure to begin, write or commit raises
  ``AuditUnavailable`` (``append_failed``: ``AuditStorageFull`` when the disk is full; a head already replaced
  for a commit that then failed is put back).
* ``snapshot()`` shows the rows and their count as of one moment. Where the head is written apart from the rows
  (a file), a head read inside the snapshot may already name a record that is being committed: ``verify`` then
  looks again with ``snapshot(settled=True)``, whose rows and head are read with no append in flight (under the
  chain's write lock, let go before the rows are walked), so steady appends cannot make an intact chain look cut.

``inhouse.testing.audit_contract`` is the conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inhouse.errors import (
    AuditStorageFull,
    AuditStorageReadOnly,
    AuditStoreUnavailable,
    AuditUnavailable,
    StorageFull,
    StorageReadOnly,
    StoreUnavailable,
    is_busy,
    is_read_only,
    is_storage_full,
)
from inhouse.governance.audit.chain import FIELDS, Head

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RecordQuery:
    """Filters ANDed together (``since``/``until`` in the ``ts`` format)."""

    since: str | None = None
    until: str | None = None
    action: str | None = None
    actor: str | None = None
    kind: str | None = None
    location: str | None = None
    label: str | None = None
    outcome: str | None = None
    document: str | None = None  # records whose ``documents`` list names this id
    request_id: str | None = None
    after_seq: int = 0
    limit: int | None = None
    newest_first: bool = False
    # The outcome of write-ahead records ('started'): only request records with it and no later request record of
    # the same request_id with another outcome (requests that never ended).
    unfinished: str | None = None

    def sql(self, placeholder: str) -> tuple[str, list[Any]]:
        """``SELECT * FROM audit_records …`` for these filters, with ``placeholder`` (``?`` or ``%s``) for values."""
        where, params = self._where(placeholder)
        sql = (f"SELECT * FROM audit_records s WHERE {where}"
               f" ORDER BY seq {'DESC' if self.newest_first else 'ASC'}")
        if self.limit is not None:
            sql += f" LIMIT {int(self.limit)}"
        return sql, params

    def group_sql(self, placeholder: str, columns: Sequence[str]) -> tuple[str, list[Any]]:
        """``SELECT <columns>, count, first seq, last seq … GROUP BY <columns>`` over the matching records
        (``limit`` and the order do not apply). ``columns`` are names of ``FIELDS``."""
        unknown = [c for c in columns if c not in FIELDS]
        if unknown or not columns:
            raise ValueError(f"cannot group audit records by {unknown or 'nothing'}")
        where, params = self._where(placeholder)
        names = ", ".join(columns)
        return (f"SELECT {names}, count(*) AS n, min(seq) AS first_seq, max(seq) AS last_seq"
                f" FROM audit_records s WHERE {where} GROUP BY {names}"), params

    def _where(self, placeholder: str) -> tuple[str, list[Any]]:
        where: list[str] = [f"seq > {placeholder}"]
        params: list[Any] = [self.after_seq]
        for column, op, value in (("ts", ">=", self.since), ("ts", "<", self.until), ("action", "=", self.action),
                                  ("actor_key_id", "=", self.actor), ("kind", "=", self.kind),
                                  ("location", "=", self.location), ("label", "=", self.label),
                                  ("outcome", "=", self.outcome), ("request_id", "=", self.request_id)):
            if value is not None:
                where.append(f"{column} {op} {placeholder}")
                params.append(value)
        if self.document is not None:
            # The list is canonical JSON (``["doc_a","doc_b"]``): the quoted id, with LIKE's wildcards escaped
            # (ids hold "_"). A scan of the column, as an investigation is (SQLite and PostgreSQL alike).
            escaped = self.document.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(f"documents LIKE {placeholder} ESCAPE '\\'")
            params.append(f'%"{escaped}"%')
        if self.unfinished is not None:
            where.append(f"s.kind = 'request' AND s.outcome = {placeholder} AND s.request_id IS NOT NULL"
                         " AND NOT EXISTS (SELECT 1 FROM audit_records f WHERE f.request_id = s.request_id"
                         f" AND f.seq > s.seq AND f.kind = 'request' AND f.outcome != {placeholder})")
            params += [self.unfinished, self.unfinished]
        return " AND ".join(where), params


@dataclass(frozen=True)
class GroupCount:
    """One group of ``AuditStore.group_counts``: the grouped columns' values, how many records, and the first and
    last ``seq`` among them."""

    values: tuple[Any, ...]
    count: int
    first_seq: int
    last_seq: int


class AuditAppend(Protocol):
    """The inside of one append (see ``AuditStore.appending``)."""

    def tail(self) -> Head | None:
        """``(seq, hash)`` of the last row; None when the chain is empty."""
        ...

    def read_head(self) -> str | None:
        """The stored head text; None when there is none. ``OSError`` when it cannot be read."""
        ...

    def insert(self, row: Row) -> None: ...

    def write_head(self, text: str) -> None: ...


class ChainSnapshot(Protocol):
    total: int  # rows in the snapshot
    last_seq: int  # the highest seq (0: empty)

    def read_head(self) -> str | None:
        """The stored head text (``OSError`` when it cannot be read)."""
        ...

    def rows(self) -> Iterator[Row]:
        """Every row, ordered by seq."""
        ...


class AuditStore(Protocol):
    def appending(self) -> AbstractContextManager[AuditAppend]: ...

    def snapshot(self, *, settled: bool = False) -> AbstractContextManager[ChainSnapshot]:
        """``settled``: taken while no append is in flight, its head read then too (``StoreUnavailable`` when the
        appends in flight do not end within the store's wait)."""
        ...

    def read_head(self) -> str | None:
        """The stored head text, outside any append (``OSError`` when it cannot be read)."""
        ...

    def count(self) -> int: ...

    def rows(self, query: RecordQuery) -> Iterator[Row]: ...

    def group_counts(self, query: RecordQuery, columns: Sequence[str]) -> list[GroupCount]:
        """The matching records counted by the values of ``columns`` (computed by the database: the report over a
        chain of millions of records reads no row into Python)."""
        ...

    def close(self) -> None: ...


def append_failed(what: str, exc: BaseException, directory: Path | None = None) -> AuditUnavailable:
    """The error an append raises when the store could not write: ``AuditStorageFull`` when the disk (``directory``'s,
    or the database server's) is full, ``AuditUnavailable`` otherwise. Either way nothing was recorded."""
    if isinstance(exc, StorageFull) or is_storage_full(exc, directory):
        return AuditStorageFull(f"{what}: the disk is full (nothing was recorded, so nothing was done; retry when "
                                "space is freed).")
    if isinstance(exc, StorageReadOnly) or is_read_only(exc, directory):
        return AuditStorageReadOnly(f"{what}: the data disk is read-only (a disk is turned read-only after an I/O "
                                    "error; nothing was recorded, so nothing was done; the disk needs repairing)")
    # Busy first: PostgreSQL's cancelled statements (a lock, a timeout, a deadlock) arrive as a StoreUnavailable
    # of code store_busy, and are no outage.
    if is_busy(exc) or (isinstance(exc, StoreUnavailable) and exc.code == "store_busy"):
        return AuditStoreUnavailable(f"{what}: the audit database is busy (another process holds its write lock; "
                                     "nothing was recorded, so nothing was done; retry shortly).", code="store_busy")
    if isinstance(exc, StoreUnavailable):
        return AuditStoreUnavailable(f"{what}: the database cannot be reached right now (nothing was recorded, so "
                                     "nothing was done; retry shortly).")
    return AuditUnavailable(f"{what}: {exc}")
