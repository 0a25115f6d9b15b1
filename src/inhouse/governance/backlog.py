"""Writes a store could not take for now (the database away, the disk full, a lock held elsewhere), kept in order
and written before the next write that can be: the audit log's final records (``audit/log.py``) and the quotas'
token charges (``quotas.py``) use one. A ``Spool`` mirrors what is kept in a local file, so a process that dies
before the store is back loses none: the next ``inhouse serve`` takes them over."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backlog(Generic[T]):
    """At most ``limit`` items, oldest first. Thread-safe; one ``flush`` writes at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def keep(self, item: T, *, then: Callable[[list[T]], None] | None = None) -> bool:
        """Keep ``item`` (``then`` sees every kept item, under the lock); False when ``limit`` are kept already."""
        with self._lock:
            if len(self._items) >= self.limit:
                return False
            self._items.append(item)
            if then is not None:
                then(list(self._items))
            return True

    def take_over(self, items: Iterable[T], *, then: Callable[[list[T]], None] | None = None) -> None:
        """Put ``items`` before those kept now (a previous process's)."""
        with self._lock:
            self._items.extendleft(reversed(list(items)))
            if then is not None:
                then(list(self._items))

    def flush(self, write: Callable[[T], object], *, emptied: Callable[[], None] | None = None) -> int:
        """Write the kept items oldest first, each dropped once written; the first failure propagates (it and the
        rest stay kept). ``emptied`` runs, under the lock, when the last one is gone. How many were written."""
        if not self._items:
            return 0
        written = 0
        with self._flushing:
            while True:
                with self._lock:
                    if not self._items:
                        return written
                    item = self._items[0]
                write(item)
                with self._lock:
                    self._items.popleft()
                    if not self._items and emptied is not None:
                        emptied()
                written += 1


class Spool:
    """A local file of JSON objects, one a line (0600, fsynced): what a ``Backlog`` keeps, for the next process. A
    write that fails (the local disk full too) is logged, and the items stay in memory only."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what  # for the log: "audit records", "token charges"

    def append(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._write(items, append=True)

    def replace(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Make the file hold exactly ``items`` (none: no file), through a renamed temporary file."""
        self._write(items, append=False)

    def read(self) -> list[dict[str, Any]]:
        """The objects in the file (none when there is none); a line that is not one (a write cut by a crash) is
        left out."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        items = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if isinstance(item, dict):
                items.append(item)
            else:
                log.warning("%s: a line that is not a JSON object was left out (a write cut by the crash)", self.path)
        return items

    def _write(self, items: Sequence[Mapping[str, Any]], *, append: bool) -> None:
        try:
            if not items and not append:
                self.path.unlink(missing_ok=True)
                return
            path = self.path if append else self.path.with_suffix(".tmp")
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            fd = os.open(path, flags, 0o600)
            try:
                os.write(fd, "".join(json.dumps(item, sort_keys=True) + "\n" for item in items).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if not append:
                path.replace(self.path)
        except OSError as exc:
            log.error("could not write the kept %s to %s: %s", self._what, self.path, exc)
