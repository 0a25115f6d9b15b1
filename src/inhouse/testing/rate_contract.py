"""``RequestWindowsContract``: the conformance suite of the requests/minute windows (``governance/quotas.py``).
Provide an ``open_windows`` fixture: a function returning the windows as another process sharing them would see
them (the one object for the in-memory windows; a new connection pool over the same database for PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from inhouse.governance.quotas import WINDOW_S, RequestWindows

OpenWindows = Callable[[], RequestWindows]


class RequestWindowsContract:
    @pytest.fixture
    def open_windows(self) -> OpenWindows:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_a_key_gets_its_limit_per_sliding_window(self, open_windows: OpenWindows) -> None:
        w = open_windows()
        assert [w.admit("key_a", 3, t) for t in (1000.0, 1010.0, 1020.0)] == [None, None, None]
        assert w.admit("key_a", 3, 1030.0) == pytest.approx(1000.0 + WINDOW_S - 1030.0)
        assert w.admit("key_b", 3, 1030.0) is None  # keys do not share a window
        assert w.admit("key_a", 3, 1000.0 + WINDOW_S) is None  # the first left the window exactly then
        assert w.admit("key_a", 3, 1061.0) == pytest.approx(1010.0 + WINDOW_S - 1061.0)
        assert w.admit("key_a", 4, 1061.0) is None  # a raised limit takes effect at once

    def test_a_refused_request_is_not_counted(self, open_windows: OpenWindows) -> None:
        w = open_windows()
        assert w.admit("key_a", 1, 1000.0) is None
        for t in (1001.0, 1002.0, 1003.0):
            assert w.admit("key_a", 1, t) is not None
        assert w.admit("key_a", 1, 1000.0 + WINDOW_S) is None

    def test_processes_racing_for_the_last_slots_get_each_once(self, open_windows: OpenWindows) -> None:
        views = [open_windows(), open_windows()]
        admitted: list[int] = []
        lock = threading.Lock()

        def hammer(view: RequestWindows, worker: int) -> None:
            for i in range(10):
                if view.admit("key_race", 7, 2000.0 + worker * 0.001 + i * 0.0001) is None:
                    with lock:
                        admitted.append(worker)

        threads = [threading.Thread(target=hammer, args=(views[n % 2], n)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(admitted) == 7
