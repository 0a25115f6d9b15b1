"""Per-key quotas on model use: requests per minute and tokens per UTC day.

* **Requests per minute** is a sliding 60-second window of admission times per key, kept by a ``RequestWindows``:
  in memory (``MemoryRequestWindows``, a deque per key: no database write) in the embedded install, where one
  process serves; in PostgreSQL (``store/postgres/rates.py``) when ``store.url`` names one, so several ingress
  processes share each key's window and together admit at most its limit. A restart forgets the in-memory
  window, which at worst lets a key make one extra minute's worth of requests. Times are the wall clock's (the
  same as the day's, and PostgreSQL's must agree across nodes); when it steps back (NTP at boot, a restored VM),
  the in-memory window counts the requests it holds from "the future" as made now, so a key waits at most one
  window, never as long as the step.
* **Tokens per day** is counted in the governance store (``key_usage``: key, UTC day, tokens, requests) after each
  request completes, so a restart does not reset the daily budget. Because the count is known only at
  the end, a request admitted under the budget may finish over it; the next one is refused. A charge the store
  cannot take when the request ends (the database away, the disk full) is kept in memory and added, to its own
  day, before the next charge that can be written, so an outage does not hand out free tokens. ``inhouse serve``
  also keeps them in ``usage.waiting.jsonl`` (``take_over_kept``; a cluster's ingress replicas one file each), so a
  server that dies before the store is back loses none: the next one adds them. Each charge written from there is
  marked done in the file; a process killed between adding one and marking it counts that one charge twice (over,
  never under).

Limits come from the key (``api_keys.rpm_limit`` / ``tokens_per_day_limit``) or, when the key has none
(NULL), from the governance settings; 0 means unlimited. Exceeding either raises ``Overloaded`` with
``retry_after_s`` computed from the window (the oldest request leaving it, or the next UTC midnight).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inhouse.errors import Overloaded, StorageFull, StoreUnavailable
from inhouse.governance.backlog import Backlog, Spool
from inhouse.governance.store import GovernanceStore

WINDOW_S = 60.0
DAY_S = 86_400
# Charges kept in memory while the store cannot take them; beyond, they are lost (and logged by the caller).
MAX_KEPT_CHARGES = 100_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Charge:
    """A finished request's tokens, for a key's count of one UTC day; ``id`` names it in the spool."""

    key_id: str
    day: int
    tokens: int
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"charge": self.id, "key_id": self.key_id, "day": self.day, "tokens": self.tokens}


@dataclass(frozen=True)
class QuotaStatus:
    rpm_limit: int  # 0: unlimited
    tokens_per_day_limit: int  # 0: unlimited
    tokens_used_today: int
    requests_today: int

    def to_dict(self) -> dict[str, int]:
        return {"rpm_limit": self.rpm_limit, "tokens_per_day_limit": self.tokens_per_day_limit,
                "tokens_used_today": self.tokens_used_today, "requests_today": self.requests_today}


class RequestWindows(Protocol):
    def admit(self, key_id: str, limit: int, now: float) -> float | None:
        """Count one request of ``key_id`` at ``now`` if fewer than ``limit`` were admitted in the ``WINDOW_S``
        before it, and return None; else count nothing and return the seconds until the oldest leaves the window.
        Atomic: callers racing for the last slot (threads, or processes sharing the store) get it once."""
        ...


class MemoryRequestWindows:
    """The windows of one process: a deque of admission times per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}

    def admit(self, key_id: str, limit: int, now: float) -> float | None:
        with self._lock:
            window = self._windows.setdefault(key_id, deque())
            # The clock stepped back: admissions "later" than now were made at most now (how long ago is unknown),
            # so they leave the window within a minute. Not a reset: threads read the clock before taking the lock,
            # so a ``now`` slightly before the last admission is ordinary, and must not free the window.
            later = 0
            while window and window[-1] > now:
                window.pop()
                later += 1
            window.extend([now] * later)
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                return window[0] + WINDOW_S - now
            window.append(now)
            return None


class QuotaService:
    def __init__(self, store: GovernanceStore, *, default_rpm: int = 0, default_tokens_per_day: int = 0,
                 clock: Callable[[], float] = time.time, windows: RequestWindows | None = None) -> None:
        self._store = store
        self._default_rpm = default_rpm
        self._default_tpd = default_tokens_per_day
        self._clock = clock
        self._windows = windows if windows is not None else MemoryRequestWindows()
        self._kept: Backlog[Charge] = Backlog(MAX_KEPT_CHARGES)
        self._spool: Spool | None = None  # where kept charges are also written (take_over_kept)

    def limits(self, key_id: str) -> tuple[int, int]:
        """(requests per minute, tokens per day) for the key; 0 is unlimited. Unknown keys: unlimited."""
        key = self._store.get_key(key_id)
        if key is None:  # the anonymous loopback actor has no key row and no quota
            return 0, 0
        rpm = key.rpm_limit if key.rpm_limit is not None else self._default_rpm
        tpd = key.tokens_per_day_limit if key.tokens_per_day_limit is not None else self._default_tpd
        return int(rpm), int(tpd)

    def check(self, key_id: str) -> None:
        """Admit one metered request for ``key_id`` or raise Overloaded. An admitted request counts."""
        rpm, tpd = self.limits(key_id)
        now = self._clock()
        if tpd:
            day = int(now // DAY_S)
            used, _ = self._store.usage(key_id, day)
            if used >= tpd:
                raise Overloaded(
                    f"This API key has used its {tpd} tokens for today (UTC); the budget renews at midnight UTC.",
                    retry_after_s=(day + 1) * DAY_S - now, code="quota_exceeded",
                )
        if rpm:
            wait_s = self._windows.admit(key_id, rpm, now)
            if wait_s is not None:
                raise Overloaded(f"This API key is limited to {rpm} requests per minute.",
                                 retry_after_s=wait_s, code="rate_limit_exceeded")

    def record_usage(self, key_id: str, tokens: int) -> None:
        """Add a finished request's tokens (prompt + generated) to today's count. When the store cannot be written
        for now, the charge is kept and written before the next one (raises only when ``MAX_KEPT_CHARGES`` wait)."""
        day, tokens = int(self._clock() // DAY_S), max(0, int(tokens))
        try:
            self._flush()
            self._store.add_usage(key_id, day, tokens)
        except (StoreUnavailable, StorageFull):
            charge = Charge(key_id, day, tokens, secrets.token_hex(8))
            if not self._kept.keep(charge, then=lambda _: self._spool_append([charge.to_dict()])):
                raise

    def take_over_kept(self, spool: Path, *, per_process: bool = False) -> int:
        """From now on, also append kept charges to ``spool`` (``inhouse serve``: ``usage.waiting.jsonl`` in its data
        directory), and take over those a previous process left there and did not mark done: kept, to be added
        before anything else (now, if the store can be written). ``per_process``: as ``AuditLog.take_over_kept``
        (this process's file is named by it; those of processes that are gone are taken over). How many were taken
        over."""
        self._spool = Spool.of_this_process(spool, "token charges") if per_process else Spool(spool, "token charges")
        self._spool.claim_orphans(spool)
        charges: dict[str, Charge] = {}
        done: set[str] = set()  # a charge's mark may come before it: a file taken over is read before this one's
        for item in self._spool.read():
            if isinstance(item.get("done"), str):
                done.add(item["done"])
            elif (isinstance(item.get("charge"), str) and isinstance(item.get("key_id"), str)
                  and isinstance(item.get("day"), int) and isinstance(item.get("tokens"), int)):
                charges[item["charge"]] = Charge(item["key_id"], item["day"], item["tokens"], item["charge"])
        taken = [charge for charge_id, charge in charges.items() if charge_id not in done]
        self._kept.take_over(taken, then=lambda kept: self._spool_replace([c.to_dict() for c in kept]))
        if taken:
            log.warning("%d token charges kept by a previous process are taken over from %s", len(taken),
                        spool.parent)
        try:
            self._flush()
        except (StoreUnavailable, StorageFull) as exc:
            log.warning("the token charges kept stay kept until the store can be written: %s", exc.message)
        return len(taken)

    def _flush(self) -> None:
        """Add the kept charges, oldest first, each marked done in the spool once added; the spool goes once none
        is left. The first failure propagates (it and the rest stay kept)."""
        def add(charge: Charge) -> None:
            self._store.add_usage(charge.key_id, charge.day, charge.tokens)
            self._spool_append([{"done": charge.id}])

        self._kept.flush(add, emptied=lambda: self._spool_replace([]))

    def _spool_append(self, items: list[dict[str, Any]]) -> None:
        if self._spool is not None:
            self._spool.append(items)

    def _spool_replace(self, items: list[dict[str, Any]]) -> None:
        if self._spool is not None:
            self._spool.replace(items)

    @property
    def waiting(self) -> int:
        """Charges kept in memory, not yet in the store."""
        return len(self._kept)

    def status(self, key_id: str) -> QuotaStatus:
        rpm, tpd = self.limits(key_id)
        tokens, requests = self._store.usage(key_id, int(self._clock() // DAY_S))
        return QuotaStatus(rpm, tpd, tokens, requests)
