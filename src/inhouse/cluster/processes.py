"""Our own Ray processes, found and stopped by PID.

``ray stop`` kills every Ray process on the machine by name, other users' and other clusters' included; inhouse never
runs it. A node started by ``inhouse cluster up``/``join`` is one ``ray start --block`` process whose descendants are
the node's daemons and workers: ``stop_tree`` signals exactly those PIDs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: the fields after the last ')' are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """Every living process below ``root`` (children, grandchildren, …), parents before children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _state(pid)
    return state is not None and state != "Z"


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def stop_pids(pids: list[int], *, timeout_s: float = 10.0) -> list[int]:
    """SIGTERM each PID, then SIGKILL those still alive after ``timeout_s``; returns the PIDs that were killed."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if alive(p)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    return killed


def stop_tree(root: int, *, timeout_s: float = 10.0) -> None:
    """Stop ``root`` and everything below it, by PID (the tree is read before the first signal: a daemon that
    re-parents itself to init when its parent goes is still found)."""
    stop_pids([root, *descendants(root)], timeout_s=timeout_s)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
