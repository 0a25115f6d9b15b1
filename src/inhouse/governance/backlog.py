"""Writes a store could not take for now (the database away, the disk full, a lock held elsewhere), kept in order
and written before the next write that can be: the audit log's final records (``audit/log.py``) and the quotas'
token charges (``quotas.py``) use one."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

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
