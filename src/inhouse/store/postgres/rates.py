"""``PostgresRequestWindows``: the requests/minute windows shared by every ingress process on one PostgreSQL (table
``request_windows``: one row per admitted request, kept while it is inside the window).

An admission is one transaction under the advisory lock of the key: drop the key's rows that left the window, count
the rest, and insert a row when there is room. Two processes racing for a key's last slot are serialised by the
lock, so exactly one gets it; different keys do not wait for each other. Rows of keys that stop calling are dropped
by any process at most once a window (``at`` is indexed), once they are two windows old: a row another process may
still count (its clock a little behind) is never swept from under its lock. Times are the calling process's clock:
the nodes' clocks must agree (NTP) to well under the 60-second window.
"""

from __future__ import annotations

import threading

from inhouse.governance.quotas import WINDOW_S
from inhouse.store.postgres.database import PostgresDatabase, lock_id


class PostgresRequestWindows:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._swept_at = float("-inf")

    def admit(self, key_id: str, limit: int, now: float) -> float | None:
        cutoff = now - WINDOW_S
        with self._db.transaction(lock=lock_id(f"rate:{key_id}")) as conn:
            conn.execute("DELETE FROM request_windows WHERE key_id = %s AND at <= %s", (key_id, cutoff))
            row = conn.execute("SELECT count(*) AS n, min(at) AS oldest FROM request_windows WHERE key_id = %s",
                               (key_id,)).fetchone()
            if int(row["n"]) >= limit:
                return float(row["oldest"]) + WINDOW_S - now
            conn.execute("INSERT INTO request_windows (key_id, at) VALUES (%s, %s)", (key_id, now))
        self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        """Drop every key's rows two windows old, at most once a window per process."""
        with self._lock:
            if now - self._swept_at < WINDOW_S:
                return
            self._swept_at = now
        self._db.execute("DELETE FROM request_windows WHERE at <= %s", (now - 2 * WINDOW_S,))
