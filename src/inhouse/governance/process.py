"""Which process wrote something, so another process can tell later whether it is still running: the host, the pid
and the pid's start time (a pid reused later has another start). The audit log's ``started`` records name it
(``audit/log.py``), and so do the spool files of processes that share a data directory (``backlog.py``).

Only a process on this host can be checked; one on another host may be running for all this host can tell."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def started_at(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``/proc/PID/stat`` field 22); None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name in parentheses may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def this_process() -> dict[str, Any]:
    """This process: ``{"host", "pid", "start"}`` (a ``started`` record's ``details.process``)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": started_at(pid)}


def still_running(process: Mapping[str, Any]) -> bool:
    """Whether the process named may still be running: on another host that cannot be told from here (so it may), on
    this one its pid must exist with the same start time."""
    if process.get("host") != socket.gethostname():
        return True
    pid = process.get("pid")
    return isinstance(pid, int) and pid > 0 and started_at(pid) == process.get("start")


def process_tag(process: Mapping[str, Any]) -> str:
    """The process as a file-name part, ``<host>-<pid>-<start>`` (the host's characters other than letters, digits,
    ``_`` and ``-`` as ``_``; no dot, so the tag ends at the next one)."""
    return f"{_UNSAFE.sub('_', str(process.get('host')))}-{process.get('pid')}-{process.get('start') or 0}"


def tag_still_running(tag: str) -> bool:
    """``still_running`` for a ``process_tag``; a tag that is not one is treated as running (left alone)."""
    parts = tag.rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        return True
    host, pid, start = parts[0], int(parts[1]), int(parts[2])
    if host != _UNSAFE.sub("_", socket.gethostname()):
        return True
    return pid > 0 and (started_at(pid) or 0) == start
