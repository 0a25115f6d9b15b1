"""Crash harness: run a real ``inhouse`` command, kill it with SIGKILL at a random moment, repeat, then check
that nothing was lost, duplicated or left half-written.

Shared by the CI tests (``tests/e2e/test_crash.py``: a few cycles) and the benchmark command
(``python -m benchmarks.crash``: 50 and more). Only ever runs processes on this machine, on a data directory it
is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def inhouse_argv(*args: str) -> list[str]:
    """The ``inhouse`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("inhouse")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "inhouse.cli.main", *args]


def ended_process() -> dict[str, Any]:
    """A process of this host (as ``this_process()`` names one: host, pid, start) that ran and has ended."""
    from inhouse.governance.process import still_running, this_process

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()
    process = {**this_process(), "pid": child.pid, "start": int(fields[19])}
    assert still_running(process)
    child.communicate(b"")
    return process


def init_process() -> dict[str, Any]:
    """Process 1 of this host, as ``this_process()`` names one: running for as long as the host is."""
    from inhouse.governance.process import this_process

    fields = Path("/proc/1/stat").read_text().rsplit(")", 1)[-1].split()
    return {**this_process(), "pid": 1, "start": int(fields[19])}


@dataclass(frozen=True)
class Kill:
    delay_s: float  # when SIGKILL was sent, after the start
    killed: bool  # False: the command had already finished
    returncode: int | None


def run_and_kill(argv: Sequence[str], *, env: dict[str, str], delay_s: float, timeout_s: float = 120.0,
                 after_line: bytes | None = None) -> Kill:
    """Start ``argv``; SIGKILL it after ``delay_s`` unless it finished first. With ``after_line``, the delay counts
    from the moment the process prints that line (its start-up done), however long the start-up took."""
    proc = subprocess.Popen(list(argv), env=env, stderr=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if after_line else subprocess.DEVNULL)
    if after_line and proc.stdout is not None:
        for line in proc.stdout:  # ends early when the process dies before printing it
            if line.strip() == after_line:
                break
    try:
        proc.wait(delay_s)
        return Kill(delay_s, False, proc.returncode)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout_s)
        return Kill(delay_s, True, proc.returncode)


def write_corpus(root: Path, n_files: int, rng: random.Random) -> None:
    """``n_files`` Markdown files of a few chunks each under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        rewrite_file(root / f"doc{i:04d}.md", rng)


def rewrite_file(path: Path, rng: random.Random) -> None:
    words = ("leave", "travel", "budget", "server", "contract", "invoice", "policy", "holiday", "release", "audit")
    paragraphs = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(rng.randint(2, 6))]
    path.write_text(f"# {path.stem} v{rng.randint(0, 10**9)}\n\n" + "\n\n".join(paragraphs) + "\n")


@dataclass
class IngestCrashReport:
    cycles: int
    kills: list[Kill] = field(default_factory=list)
    documents_after_each: list[int] = field(default_factory=list)
    files: int = 0
    final_returncode: int | None = None
    check: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # files not indexed, or indexed with old bytes
    duplicates: int = 0
    extra: list[str] = field(default_factory=list)  # documents no file stands for
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.final_returncode == 0 and bool(self.check.get("ok")) and not self.missing
                and not self.duplicates and not self.extra)

    def to_dict(self) -> dict[str, Any]:
        killed = [k for k in self.kills if k.killed]
        return {"ok": self.ok, "cycles": self.cycles, "killed_mid_run": len(killed),
                "finished_before_kill": self.cycles - len(killed), "files": self.files,
                "documents_after_each_kill": self.documents_after_each, "missing": self.missing[:20],
                "duplicates": self.duplicates, "extra": self.extra[:20], "check": self.check,
                "seconds": round(self.seconds, 1)}


def ingest_crash_cycles(workdir: Path, *, cycles: int, seed: int = 0, n_files: int = 80,
                        rewrite: float = 0.8) -> IngestCrashReport:
    """One timed complete run of ``inhouse ingest`` (T); then ``cycles`` times: rewrite a share ``rewrite`` of the
    files (so every run has work: replacements), start ``inhouse ingest`` and SIGKILL it after a random delay in
    [0.1 T, 1.1 T] (start-up, parsing, embedding, commits). Then one complete run and the checks: every file
    indexed exactly once with its current bytes, no orphan, ``inhouse kb check`` consistent."""
    rng = random.Random(seed)
    docs, data = workdir / "docs", workdir / "data"
    write_corpus(docs, n_files, rng)
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data), "INHOUSE_KB__EMBEDDER": "fake"}
    argv = inhouse_argv("ingest", str(docs), "--collection", "crash", "--label", "internal")
    report = IngestCrashReport(cycles=cycles, files=n_files)
    start = time.monotonic()
    subprocess.run(argv, env=env, capture_output=True, timeout=600, check=True)
    full_s = time.monotonic() - start
    files = sorted(docs.iterdir())
    for _ in range(cycles):
        for path in rng.sample(files, max(1, int(rewrite * len(files)))):
            rewrite_file(path, rng)
        report.kills.append(run_and_kill(argv, env=env, delay_s=rng.uniform(0.1 * full_s, 1.1 * full_s)))
        report.documents_after_each.append(_count_documents(data / "kb.db"))
    final = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    report.final_returncode = final.returncode
    checked = subprocess.run(inhouse_argv("kb", "check", "--json"), env=env, capture_output=True, text=True,
                             timeout=300)
    report.check = json.loads(checked.stdout) if checked.stdout.strip().startswith("{") else {"error": checked.stderr}
    indexed = _documents(data / "kb.db")
    expected = {f"{docs.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    paths = [path for path, _ in indexed]
    report.duplicates = len(paths) - len(set(paths))
    have = dict(indexed)
    report.missing = sorted(p for p, sha in expected.items() if have.get(p) != sha)
    report.extra = sorted(set(have) - set(expected))
    report.seconds = time.monotonic() - start
    return report


def _documents(path: Path) -> list[tuple[str, str]]:
    import sqlite3

    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(str(a), str(b)) for a, b in conn.execute("SELECT source_path, sha256 FROM kb_documents")]
    except sqlite3.OperationalError:
        return []  # killed before the schema was created
    finally:
        conn.close()


def _count_documents(path: Path) -> int:
    return len(_documents(path))


@dataclass
class ServerCrashReport:
    cycles: int
    streams_started: int = 0
    streams_completed: int = 0  # finished before the kill
    streams_cut: int = 0  # broken by the kill (expected)
    restarts_ok: int = 0  # restarted and answered a chat completion
    interrupted_closed: int = 0  # 'started' records given their 'interrupted' final record on restart
    verify: dict[str, Any] = field(default_factory=dict)
    unfinished_after: int = -1
    engine_processes_killed_with: int = 0  # the killed servers' engine processes, each of which must end too
    orphans: int = 0  # engine processes still running 10 s after their server was killed
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.restarts_ok == self.cycles and bool(self.verify.get("ok")) and self.verify.get("reseals") == 0
                and self.unfinished_after == 0 and self.orphans == 0)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "cycles": self.cycles, "streams_started": self.streams_started,
                "streams_completed": self.streams_completed, "streams_cut": self.streams_cut,
                "restarts_ok": self.restarts_ok, "interrupted_closed": self.interrupted_closed,
                "verify": self.verify, "unfinished_after": self.unfinished_after,
                "engine_processes_killed_with": self.engine_processes_killed_with, "orphans": self.orphans,
                "seconds": round(self.seconds, 1)}


def server_crash_cycles(workdir: Path, *, cycles: int, model: str = "smollm2-135m", streams: int = 6,
                        seed: int = 0, window_s: tuple[float, float] = (0.3, 2.0)) -> ServerCrashReport:
    """``cycles`` times: start ``inhouse serve``, run ``streams`` streaming chats, SIGKILL the server after a random
    delay while they run; restart it and check it answers. Finally ``inhouse audit verify`` must pass with no
    reseal, every request the kills cut off must have its final record, outcome ``interrupted``, and no engine
    process of a killed server may still run 10 s after it (an orphan would hold its model's memory)."""
    import threading

    import httpx

    from inhouse.hardware.cpu import descendant_pids
    from inhouse.testing.server_process import ServerProcess, create_admin_key

    rng = random.Random(seed)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    key = create_admin_key(data)
    headers = {"Authorization": f"Bearer {key}"}
    report = ServerCrashReport(cycles=cycles)
    start = time.monotonic()
    lock = threading.Lock()

    def stream(url: str, i: int) -> None:
        body = {"model": model, "stream": True, "max_tokens": 400, "temperature": 0.7, "seed": i,
                "messages": [{"role": "user", "content": f"Tell a long story about lighthouse number {i}."}]}
        done = False
        try:
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
                for line in r.iter_lines():
                    if line.strip() == "data: [DONE]":
                        done = True
        except httpx.HTTPError:
            pass
        with lock:
            report.streams_started += 1
            report.streams_completed += done
            report.streams_cut += not done

    server = ServerProcess(data, model)
    for _ in range(cycles):
        server.start()
        threads = [threading.Thread(target=stream, args=(server.url, rng.randint(0, 10**6))) for _ in range(streams)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(*window_s))
        engines = descendant_pids(server.pid)
        server.kill()
        report.engine_processes_killed_with += len(engines)
        report.orphans += len(still_running(engines, wait_s=10.0))
        for t in threads:
            t.join(60)
        server.start()  # the restart closes the cut-off requests as interrupted
        chat = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=120,
                          json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
        report.restarts_ok += chat.status_code == 200
        server.stop()
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data)}
    verified = subprocess.run(inhouse_argv("audit", "verify", "--json"), env=env, capture_output=True, text=True,
                              timeout=300)
    report.verify = json.loads(verified.stdout) if verified.stdout.strip().startswith("{") else {
        "error": verified.stderr[-2000:]}
    from inhouse.governance.audit import INTERRUPTED
    from inhouse.store.sqlite.audit import open_sqlite_audit_log

    log = open_sqlite_audit_log(data / "audit.db")
    try:
        report.interrupted_closed = sum(1 for r in log.iter_records(kind="request") if r.outcome == INTERRUPTED)
        report.unfinished_after = len(log.unfinished())
    finally:
        log.close()
    report.seconds = time.monotonic() - start
    return report


# Runs administrative changes in a loop until killed: users (create, role, disable, group membership, delete),
# keys (create, limits, revoke) and knowledge documents (add, delete).
_ADMIN_WORKER = """
import sys, time
from pathlib import Path
from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.types import Actor

actor = Actor(key_id="key_cli", name="crash test", role="admin")
s = build_services(Settings(data_dir=Path(sys.argv[1]), kb={"embedder": "fake"}))
kb = s.kb
try:
    kb.collection(actor, "crash")
except Exception:
    kb.create_collection(actor, "crash")
try:
    group = s.directory.find_group("staff")
except Exception:
    group = s.directory.create_group("staff")
print("ready", flush=True)
i = int(time.time() * 1000) % 10**9
while True:
    i += 1
    user = s.directory.create_user(f"u{i}", display_name=f"User {i}")
    s.directory.add_member(group.id, user.id)
    record, _ = s.keys.create_key(f"k{i}", user_id=user.id, rpm_limit=60)
    s.keys.set_limits(record.id, rpm_limit=120, tokens_per_day_limit=1000)
    s.directory.update_user(user.id, role="admin")
    s.directory.update_user(user.id, disabled=True)
    doc = kb.add_document(actor, "crash", (f"# Note {i}\\n\\n" + "text of the note " * 50).encode(), f"n{i}.md")
    if i % 2:
        kb.delete_document(actor, doc.document_id)
        s.keys.revoke(record.id)
        s.directory.remove_member(group.id, user.id)
    if i % 3 == 0:
        s.directory.delete_user(user.id)
"""


@dataclass
class AdminCrashReport:
    cycles: int
    kills: list[Kill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    users: int = 0
    keys: int = 0
    documents: int = 0
    audited_not_applied: int = 0  # audit records of changes the crash rolled back (recorded first, by design)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "cycles": self.cycles, "killed_mid_run": sum(k.killed for k in self.kills),
                "problems": self.problems[:20], "users": self.users, "keys": self.keys, "documents": self.documents,
                "audited_not_applied": self.audited_not_applied, "seconds": round(self.seconds, 1)}


def still_running(pids: list[int], *, wait_s: float) -> list[int]:
    """Those of ``pids`` still running (neither gone nor a zombie) after up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def admin_crash_cycles(workdir: Path, *, cycles: int, seed: int = 0,
                       window_s: tuple[float, float] = (0.05, 2.5)) -> AdminCrashReport:
    """``cycles`` times: run administrative changes in a loop and SIGKILL the process at a random moment of them
    (``window_s`` after its start-up is done: start-up takes from under one to several seconds with the machine's
    load, and a kill there tests nothing); after each kill open the data directory and check that nothing is
    half-applied (``check_admin_state``)."""
    rng = random.Random(seed)
    data = workdir / "data"
    report = AdminCrashReport(cycles=cycles)
    start = time.monotonic()
    for cycle in range(cycles):
        report.kills.append(run_and_kill([sys.executable, "-c", _ADMIN_WORKER, str(data)], env=dict(os.environ),
                                         delay_s=rng.uniform(*window_s), after_line=b"ready"))
        report.problems += [f"cycle {cycle}: {p}" for p in check_admin_state(data, report)]
    report.seconds = time.monotonic() - start
    return report


def check_admin_state(data: Path, report: AdminCrashReport | None = None) -> list[str]:
    """What a crash may not leave behind: a broken database, a key or user that was never audited, a key whose user
    is gone, a group member that does not exist, an inconsistent knowledge index, an audit chain that needs an
    operator."""
    from inhouse.bootstrap import build_services
    from inhouse.config import Settings

    problems: list[str] = []
    s = build_services(Settings(data_dir=data, kb={"embedder": "fake"}))
    try:
        if (v := s.audit.verify()).ok is False or v.reseals:
            problems.append(f"audit: {v.message}")
        if (ic := s.db.query("PRAGMA integrity_check")[0][0]) != "ok":
            problems.append(f"inhouse.db integrity: {ic}")
        if fk := s.db.query("PRAGMA foreign_key_check"):
            problems.append(f"foreign keys: {len(fk)} rows")
        if n := s.db.scalar("SELECT count(*) FROM api_keys k WHERE k.user_id IS NOT NULL AND k.revoked_at IS NULL"
                            " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = k.user_id)"):
            problems.append(f"{n} active keys of users that do not exist")
        created = {(r.action, r.resource) for r in s.audit.iter_records(kind="security")}
        users = [r["id"] for r in s.db.query("SELECT id FROM users")]
        keys = [r["id"] for r in s.db.query("SELECT id FROM api_keys")]
        problems += [f"user {u} exists without its audit record" for u in users if ("user.created", u) not in created]
        problems += [f"key {k} exists without its audit record" for k in keys if ("key.created", k) not in created]
        assert s.kb is not None
        check = s.kb.store.check()
        if not check.ok:
            problems.append(f"kb check: {check.to_dict()}")
        if report is not None:
            report.users, report.keys, report.documents = len(users), len(keys), check.counts["documents"]
            deleted = {res for a, res in created if a == "user.deleted"}
            report.audited_not_applied = sum(1 for a, res in created if a == "user.created" and res not in users
                                             and res not in deleted)
    finally:
        s.close()
    return problems
