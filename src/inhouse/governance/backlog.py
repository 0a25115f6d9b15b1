"""Writes a store could not take for now (the database away, the disk full, a lock held elsewhere), kept in order
and written before the next write that can be: the audit log's final records (``audit/log.py``) and the quotas'
token charges (``quotas.py``) use one. A ``Spool`` mirrors what is kept in a local file, so a process that dies
before the store is back loses none: the next ``inhouse serve`` (or, in a cluster, the next ingress replica on the
host) takes them over."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from inhouse.governance.process import process_tag, tag_still_running, this_process

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
    write that fails (the local disk full too) is logged, and the items stay in memory only.

    Where several processes share a data directory (a cluster's ingress replicas), each has its own file, named by
    its process (``of_this_process``), and the next one to start takes over those whose process is gone
    (``claim_orphans``)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what  # for the log: "audit records", "token charges"
        self._claimed: list[Path] = []  # other processes' spools taken over: read with this one, gone on replace

    @classmethod
    def of_this_process(cls, path: Path, what: str) -> Spool:
        """The spool of this process beside ``path``: ``audit.waiting.jsonl`` gives
        ``audit.waiting.<host>-<pid>-<start>.jsonl``."""
        return cls(_tagged(path, process_tag(this_process())), what)

    def orphans(self, like: Path) -> list[Path]:
        """The process-named spools of ``like`` (``of_this_process``) whose process is gone from this host, and
        those it had claimed (a process on another host, or one that is running, is left alone)."""
        found = []
        for candidate in sorted(like.parent.glob(f"{like.stem}.*{like.suffix}")):
            tag = candidate.name[len(like.stem) + 1:-len(like.suffix)].split(".")[0]
            if candidate != self.path and not tag_still_running(tag):
                found.append(candidate)
        return found

    def claim_orphans(self, like: Path, orphans: Sequence[Path] | None = None) -> int:
        """Take over ``orphans(like)`` (or ``orphans``, as the caller just listed them): each is first renamed to a
        name of this process, so two processes starting together never both take one, and one that dies holding it
        leaves it to the next. They are read with this spool and removed by its next ``replace``. How many were
        taken."""
        mine = process_tag(this_process())
        for orphan in self.orphans(like) if orphans is None else orphans:
            claimed = _tagged(like, f"{mine}.from-{secrets.token_hex(4)}")
            try:
                os.rename(orphan, claimed)
            except FileNotFoundError:
                continue  # another process took it first
            except OSError as exc:
                log.error("could not take over the kept %s in %s: %s", self._what, orphan, exc)
                continue
            self._claimed.append(claimed)
        return len(self._claimed)

    def append(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._write(items, append=True)

    def replace(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Make the file hold exactly ``items`` (none: no file), through a renamed temporary file; the spools taken
        over go once it does."""
        if self._write(items, append=False):
            for claimed in self._claimed:
                try:
                    claimed.unlink(missing_ok=True)
                except OSError as exc:  # read again by a later process: records once, charges maybe twice (over)
                    log.error("could not remove the kept %s taken over from %s: %s", self._what, claimed, exc)
            self._claimed = []

    def read(self) -> list[dict[str, Any]]:
        """The objects in the spools taken over, then in this one (none when there is none); a line that is not one
        (a write cut by a crash) is left out."""
        items = []
        for path in [*self._claimed, self.path]:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                try:
                    item = json.loads(line)
                except ValueError:
                    item = None
                if isinstance(item, dict):
                    items.append(item)
                else:
                    log.warning("%s: a line that is not a JSON object was left out (a write cut by the crash)", path)
        return items

    def _write(self, items: Sequence[Mapping[str, Any]], *, append: bool) -> bool:
        try:
            if not items and not append:
                self.path.unlink(missing_ok=True)
                return True
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
            return True
        except OSError as exc:
            log.error("could not write the kept %s to %s: %s", self._what, self.path, exc)
            return False


def _tagged(path: Path, tag: str) -> Path:
    """``path`` with ``tag`` before its suffix (``audit.waiting.jsonl`` → ``audit.waiting.<tag>.jsonl``)."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")
