"""The audit log: appends, the chain, the signed head, and ``verify`` against every kind of tampering.

The attacker model of the tamper tests: someone who can write the database file with raw sqlite3 (after
dropping our append-only triggers) and can replace files in the data directory, but does not hold the key
in ``audit.key`` (or replaces it, which is detected too).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import AuditUnavailable, InvalidRequest, StoreUnavailable
from inhouse.governance.audit import (
    FIELDS,
    GENESIS,
    RESEALED,
    STARTED,
    AuditLog,
    canonical_json,
    parse_since,
    record_hash,
)
from inhouse.governance.audit.store import append_failed
from inhouse.governance.events import KEY_CREATED, SecurityEvent
from inhouse.governance.process import process_tag, this_process
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.testing.crash import ended_process, init_process

N = 50


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        if i % 3 == 0:
            log.record(SecurityEvent(KEY_CREATED, "key_admin", "usr_admin", f"key_{i:04d}",
                                     details={"name": f"key {i}", "role": "member"}, at=1_700_000_000 + i))
        else:
            log.record_request(action="chat:create", outcome="success", request_id=f"req_{i}",
                               actor_key_id=f"key_{i % 5}", user_id="usr_1", resource="POST /v1/chat/completions",
                               model="fake-model", location="local", label="internal",
                               documents=[f"doc_{i}", f"chk_{i}_0"], redactions={"email": i % 2},
                               details={"status": 200, "prompt_tokens": i, "completion_tokens": 2 * i},
                               at=1_700_000_000 + i)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50-record log, built once; every tamper case works on a copy."""
    d = tmp_path_factory.mktemp("audit-template")
    log = open_sqlite_audit_log(d / "audit.db")
    fill(log, N)
    log.close()  # checkpoints the WAL into audit.db
    return d


def copy_of(template: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("audit.db", "audit.key", "audit.head"):
        shutil.copy2(template / name, dest / name)
    return dest


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    a = open_sqlite_audit_log(tmp_path / "audit.db")
    yield a
    a.close()


# -- raw tampering -------------------------------------------------------------------------------------


def raw(d: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(d / "audit.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous = OFF")  # the attacker needs no durability; the tests need speed
    conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
    return conn


def rows(conn: sqlite3.Connection) -> dict[int, dict[str, Any]]:
    return {r["seq"]: dict(r) for r in conn.execute("SELECT * FROM audit_records ORDER BY seq")}


def insert_row(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    cols = [*FIELDS, "hash"]
    conn.execute(f"INSERT INTO audit_records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])


def shift_up(conn: sqlite3.Connection, from_seq: int) -> None:
    # Two steps so the primary key never collides mid-update.
    conn.execute("UPDATE audit_records SET seq = -(seq + 1) WHERE seq >= ?", (from_seq,))
    conn.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0")


def forged(prev_hash: str, seq: int) -> dict[str, Any]:
    row = {"seq": seq, "ts": "2023-11-14T22:13:20.000000Z", "kind": "request", "action": "chat:create",
           "request_id": "req_forged", "actor_key_id": "key_innocent", "user_id": None, "resource": None,
           "model": "fake-model", "location": "local", "label": "public", "documents": "[]",
           "redactions": "{}", "outcome": "success", "reason": None, "details": "{}", "prev_hash": prev_hash}
    row["hash"] = record_hash(row)
    return row


_MODIFIABLE = ["outcome", "actor_key_id", "details", "ts", "label", "location", "documents", "redactions",
               "prev_hash", "hash", "action", "model"]


def modify(d: Path, k: int) -> None:
    column = _MODIFIABLE[k % len(_MODIFIABLE)]
    value = {"details": '{"forged":true}', "documents": '["doc_x"]', "redactions": '{"email":99}',
             "prev_hash": "1" * 64,
             "hash": "2" * 64}.get(column, "forged")
    with raw(d) as conn:
        conn.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = ?", (value, k))


def delete(d: Path, k: int) -> None:
    with raw(d) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = ?", (k,))


def insert(d: Path, k: int) -> None:
    """A forged record with a correct hash, linked to its predecessor, at position k (later ones shift)."""
    with raw(d) as conn:
        prev = GENESIS if k == 1 else rows(conn)[k - 1]["hash"]
        shift_up(conn, k)
        insert_row(conn, forged(prev, k))


def reorder(d: Path, i: int, j: int) -> None:
    """Swap the contents of records i and j (each keeps its position number)."""
    with raw(d) as conn:
        table = rows(conn)
        a, b = table[i], table[j]
        conn.execute("DELETE FROM audit_records WHERE seq IN (?, ?)", (i, j))
        insert_row(conn, {**b, "seq": i})
        insert_row(conn, {**a, "seq": j})


def truncate(d: Path, k: int) -> None:
    with raw(d) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq >= ?", (k,))


def rehash_from(d: Path, k: int, *, only_one: bool = False) -> None:
    """Modify record k and recompute its hash (and, unless ``only_one``, the whole chain after it)."""
    with raw(d) as conn:
        table = rows(conn)
        prev = GENESIS if k == 1 else table[k - 1]["hash"]
        for seq in range(k, N + 1):
            row = dict(table[seq])
            if seq == k:
                row["outcome"] = "forged"
            if not only_one or seq == k:
                row["prev_hash"] = prev
                row["hash"] = record_hash(row)
                conn.execute("UPDATE audit_records SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                             (row["outcome"], row["prev_hash"], row["hash"], seq))
            prev = row["hash"]
            if only_one:
                break


def verify(d: Path) -> Any:
    a = open_sqlite_audit_log(d / "audit.db")
    try:
        return a.verify()
    finally:
        a.close()


Tamper = Callable[[Path, int], None]
POSITIONS = range(1, N + 1)


def sweep(template: Path, tmp_path: Path, tamper: Tamper, expect: Callable[[int], tuple[str, int | None]],
          positions: range | list[int] = POSITIONS) -> None:
    for k in positions:
        d = copy_of(template, tmp_path / f"case{k}")
        tamper(d, k)
        report = verify(d)
        kind, seq = expect(k)
        assert not report.ok, f"position {k}: tampering not detected"
        assert (report.kind, report.first_broken_seq) == (kind, seq), f"position {k}: {report}"


# -- tamper sweeps -------------------------------------------------------------------------------------


def test_untampered_log_verifies(template: Path, tmp_path: Path) -> None:
    report = verify(copy_of(template, tmp_path / "c"))
    assert report.ok and report.records == N and report.head_seq == N and report.first_broken_seq is None


def test_modify_any_field_at_any_position(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, modify, lambda k: ("modified", k))


def test_delete_a_record_at_any_position(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, delete, lambda k: ("deleted", k), positions=[k for k in POSITIONS if k < N])


def test_the_last_record_cannot_be_removed_it_is_in_the_signed_head(template: Path, tmp_path: Path) -> None:
    """The head file holds its record (signed), so deleting the last record is undone when the log is next
    opened: the same path that finishes an append a crash interrupted."""
    for tamper in (delete, truncate):
        d = copy_of(template, tmp_path / tamper.__name__)
        with raw(d) as conn:
            original = rows(conn)[N]
        tamper(d, N)
        report = verify(d)
        assert report.ok and report.records == N, report
        with raw(d) as conn:
            assert rows(conn)[N] == original


def test_insert_a_forged_record_with_a_valid_hash(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, insert, lambda k: ("inserted", k), positions=range(1, N + 2))


def test_reorder_two_records(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, lambda d, k: reorder(d, k, k + 1), lambda k: ("reordered", k), range(1, N))
    far = [(1, N), (3, 30), (17, 18), (40, 49)]
    for i, j in far:
        d = copy_of(template, tmp_path / f"far{i}-{j}")
        reorder(d, i, j)
        report = verify(d)
        assert (report.kind, report.first_broken_seq) == ("reordered", i), report


def test_truncate_the_tail(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, truncate, lambda k: ("truncated", k), positions=[k for k in POSITIONS if k < N])


def test_replace_one_record_with_a_recomputed_hash(template: Path, tmp_path: Path) -> None:
    sweep(template, tmp_path, lambda d, k: rehash_from(d, k, only_one=True), lambda k: ("modified", k))


def test_recompute_the_whole_chain_is_caught_by_the_head(template: Path, tmp_path: Path) -> None:
    # The chain alone cannot say where a consistent rewrite began; the signed head says that it happened.
    sweep(template, tmp_path, rehash_from, lambda k: ("modified", N), positions=[1, 2, 25, 49, 50])


def test_replace_the_head_file(template: Path, tmp_path: Path) -> None:
    for k in (1, 10, N - 1, N + 5):
        d = copy_of(template, tmp_path / f"h{k}")
        head = json.loads((d / "audit.head").read_text())
        with raw(d) as conn:
            table = rows(conn)
        head.update(seq=k, hash=table[k]["hash"] if k in table else "3" * 64)  # the old mac no longer fits
        (d / "audit.head").write_text(json.dumps(head))
        report = verify(d)
        assert (report.ok, report.kind, report.first_broken_seq) == (False, "head_signature_invalid", None)
    d = copy_of(template, tmp_path / "garbage")
    (d / "audit.head").write_text("not json")
    assert verify(d).kind == "head_signature_invalid"
    d = copy_of(template, tmp_path / "gone")
    (d / "audit.head").unlink()
    assert verify(d).kind == "head_missing"


def test_an_older_signed_head_over_an_intact_log(template: Path, tmp_path: Path) -> None:
    """Restoring an earlier (genuinely signed) head: the records after it show as unsigned inserts."""
    d = tmp_path / "grow"
    d.mkdir()
    log = open_sqlite_audit_log(d / "audit.db")
    fill(log, 10)
    old_head = (d / "audit.head").read_text()
    fill(log, 5, start=10)
    log.close()
    (d / "audit.head").write_text(old_head)
    report = verify(d)
    assert (report.kind, report.first_broken_seq) == ("inserted", 11)


def test_change_the_key(template: Path, tmp_path: Path) -> None:
    d = copy_of(template, tmp_path / "k")
    (d / "audit.key").write_text("ab" * 32 + "\n")
    assert verify(d).kind == "head_signature_invalid"
    (d / "audit.key").unlink()
    report = verify(d)
    assert report.kind == "head_signature_invalid" and "key" in report.message


# -- fail closed and recovery --------------------------------------------------------------------------


def test_appends_are_refused_once_the_tail_does_not_match_the_head(template: Path, tmp_path: Path) -> None:
    d = copy_of(template, tmp_path / "t")
    truncate(d, 40)
    log = open_sqlite_audit_log(d / "audit.db")
    try:
        # Appending would re-sign the cut chain and erase the evidence: refuse instead.
        with pytest.raises(AuditUnavailable, match="signed head"):
            log.record_request(action="chat:create", outcome="success")
        assert log.count() == 39
        with pytest.raises(InvalidRequest):
            log.reseal("  ")
        rec = log.reseal("truncation investigated in ticket 123", actor_key_id="key_admin")
        assert rec.seq == 40 and rec.action == RESEALED
        assert rec.details["previous_head"]["seq"] == N
        log.record_request(action="chat:create", outcome="success")
        report = log.verify()
        assert report.ok and report.reseals == 1 and report.records == 41
    finally:
        log.close()


def test_triggers_block_update_and_delete_through_the_api_connection(log: AuditLog) -> None:
    fill(log, 3)
    conn = sqlite3.connect(log.store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_records SET outcome = 'x' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_records")
    finally:
        conn.close()
    assert log.verify().ok


def test_a_failing_database_write_raises_and_records_nothing(log: AuditLog) -> None:
    fill(log, 2)
    log.store.connection.execute("PRAGMA query_only = ON")  # every write now fails inside SQLite
    with pytest.raises(AuditUnavailable):
        log.record(SecurityEvent(KEY_CREATED, None, None, "key_x"))
    log.store.connection.execute("PRAGMA query_only = OFF")
    assert log.count() == 2 and log.verify().ok
    log.record(SecurityEvent(KEY_CREATED, None, None, "key_y"))
    assert log.count() == 3 and log.verify().ok


def test_a_failing_head_write_rolls_the_record_back(tmp_path: Path) -> None:
    d = tmp_path / "h"
    d.mkdir()
    log = open_sqlite_audit_log(d / "audit.db", head_path=d / "head-dir")
    try:
        (d / "head-dir").mkdir()  # os.replace onto a directory fails: the head cannot be written
        with pytest.raises(AuditUnavailable):
            log.record_request(action="chat:create", outcome="success")
        assert log.count() == 0
    finally:
        log.close()


def test_closed_log_refuses(log: AuditLog) -> None:
    log.close()
    with pytest.raises(AuditUnavailable):
        log.record_request(action="x", outcome="success")


# -- contents ------------------------------------------------------------------------------------------


def test_files_pragmas_and_key_mode(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().message == "the log is empty"
    assert not log.key_path.exists()  # created on first use
    log.record_request(action="models:read", outcome="success")
    assert stat.S_IMODE(log.key_path.stat().st_mode) == 0o600
    head = json.loads(log.store.head_path.read_text())
    assert head["seq"] == 1 and len(head["mac"]) == 64
    assert log.store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log.store.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_chain_links_and_security_event_mapping(log: AuditLog) -> None:
    log.record(SecurityEvent("egress.decision", "key_1", "usr_1", "req_9", outcome="denied",
                             details={"request_id": "req_9", "destination": "cloud-gpt", "label": "confidential",
                                      "redactions": {"EMAIL": 2, "phone_cn": 1}, "reason": "label too high",
                                      "documents": ["doc_1"], "policy": "default"}, at=1_700_000_000))
    rec = log.record_request(action="chat:create", outcome="success", request_id="req_9", model="m",
                             location="local", label="confidential")
    first, second = log.records()
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash and second == rec
    assert first.kind == "security" and first.location == "cloud-gpt" and first.label == "confidential"
    assert first.redactions == {"EMAIL": 2, "phone_cn": 1} and first.documents == ("doc_1",)
    assert first.reason == "label too high" and first.details == {"policy": "default"}
    assert first.ts == "2023-11-14T22:13:20.000000Z" and first.request_id == "req_9"


@pytest.mark.parametrize("redactions", [{"alice@example.com": 1}, {"email": "alice@example.com"},
                                        {"13800138000": 1}, {"email": -1}, {"email": True}])
def test_redactions_are_counts_by_kind_never_values(log: AuditLog, redactions: Any) -> None:
    with pytest.raises(ValueError):
        log.record_request(action="chat:create", outcome="success", redactions=redactions)
    assert log.count() == 0


def test_secrets_never_reach_the_log(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="secret"):
        log.record(SecurityEvent(KEY_CREATED, None, None, "key_1", details={"name": "n", "secret": "ih_x"}))
    with pytest.raises(ValueError):
        log.record_request(action="a", outcome="success", details={"nested": [{"password": "p"}]})
    assert log.count() == 0


def test_filters_export_and_third_party_verification(log: AuditLog) -> None:
    fill(log, 12)
    assert [r.seq for r in log.records(action=KEY_CREATED)] == [1, 4, 7, 10]
    assert [r.seq for r in log.records(actor="key_2")] == [3, 8]
    assert [r.seq for r in log.records(limit=3, newest_first=True)] == [12, 11, 10]
    assert [r.seq for r in log.records(since="2023-11-14T22:13:30.000000Z")] == [11, 12]
    assert [r.seq for r in log.records(kind="security", after_seq=4)] == [7, 10]
    lines = [json.dumps(d) for d in log.export()]
    exported = [json.loads(x) for x in lines]
    assert len(exported) == 12 and exported[1]["documents"] == ["doc_1", "chk_1_0"]
    # Anyone can check an export without the key: re-serialise the JSON fields canonically and hash.
    prev = GENESIS
    for d in exported:
        stored = {**d, **{k: canonical_json(d[k]) for k in ("documents", "redactions", "details")}}
        assert stored["prev_hash"] == prev and record_hash(stored) == d["hash"]
        prev = d["hash"]


def test_concurrent_appends_from_threads_and_two_instances(tmp_path: Path) -> None:
    # Two AuditLog objects on the same files stand in for the server and a CLI command appending together.
    a, b = open_sqlite_audit_log(tmp_path / "audit.db"), open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        def work(log: AuditLog, tag: str) -> None:
            for i in range(15):
                log.record_request(action="chat:create", outcome="success", request_id=f"{tag}{i}")

        threads = [threading.Thread(target=work, args=(log, f"t{n}")) for n, log in enumerate([a, b, a, b])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.seq for r in a.records()] == list(range(1, 61))
        assert a.verify().ok and b.verify().ok
    finally:
        a.close()
        b.close()


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("7d", now=now) == "2023-11-07T22:13:20.000000Z"
    assert parse_since("12h", now=now) == "2023-11-14T10:13:20.000000Z"
    assert parse_since("2024-01-02") == "2024-01-02T00:00:00.000000Z"
    assert parse_since("2024-01-02T03:04:05+01:00") == "2024-01-02T02:04:05.000000Z"
    assert parse_since("2024-01-02T03:04:05Z") == "2024-01-02T03:04:05.000000Z"
    for bad in ("yesterday", "7x", "", "1; DROP TABLE audit_records"):
        with pytest.raises(InvalidRequest):
            parse_since(bad)


# -- records kept while the store cannot be written ------------------------------------------------------


@pytest.fixture
def store_away(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``store_away(True)``: every append fails as when the database server is away; ``store_away(False)``: back."""
    appending = log.store.appending
    away = [False]

    def maybe_away() -> Any:
        if away[0]:
            raise append_failed("The audit log cannot be written", StoreUnavailable("The database is away."))
        return appending()

    monkeypatch.setattr(log.store, "appending", maybe_away)
    return lambda on: away.__setitem__(0, on)


def test_a_finished_request_record_is_kept_while_the_store_is_away_and_written_first_after(
        log: AuditLog, store_away: Callable[[bool], None]) -> None:
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_1")
    store_away(True)
    log.record_finished_request(action="chat:create", outcome="success", request_id="req_1", details={"n": 1})
    log.record_finished_request(action="chat:create", outcome="aborted", request_id="req_2")
    assert log.count() == 1 and log.waiting == 2
    with pytest.raises(AuditUnavailable):  # what has not happened yet is still refused
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_3")
    with pytest.raises(AuditUnavailable):
        log.record(SecurityEvent(KEY_CREATED, None, None, "key_x"))
    store_away(False)
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_3")
    recs = log.records()
    assert [(r.request_id, r.outcome) for r in recs] == [
        ("req_1", STARTED), ("req_1", "success"), ("req_2", "aborted"), ("req_3", STARTED)]
    assert recs[1].details == {"n": 1} and recs[1].ts <= recs[3].ts  # its own time, not the time it was written
    assert log.waiting == 0 and log.verify().ok and [r.request_id for r in log.unfinished()] == ["req_3"]


def test_kept_records_are_bounded_and_written_on_close(log: AuditLog, store_away: Callable[[bool], None],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log._kept, "limit", 2)  # MAX_KEPT, as the log was built with it
    store_away(True)
    log.record_finished_request(action="chat:create", outcome="success", request_id="a")
    log.record_finished_request(action="chat:create", outcome="success", request_id="b")
    with pytest.raises(AuditUnavailable):
        log.record_finished_request(action="chat:create", outcome="success", request_id="c")
    with pytest.raises(ValueError):
        log.record_finished_request(action="chat:create", outcome=STARTED, request_id="d")
    store_away(False)
    log.close()
    again = open_sqlite_audit_log(log.store.path)
    try:
        assert [r.request_id for r in again.records()] == ["a", "b"] and again.verify().ok
    finally:
        again.close()


def test_a_log_that_no_longer_matches_its_head_keeps_nothing(log: AuditLog,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def mismatch() -> Any:
        raise AuditUnavailable("The audit log does not match its signed head.")

    monkeypatch.setattr(log.store, "appending", mismatch)
    with pytest.raises(AuditUnavailable):
        log.record_finished_request(action="chat:create", outcome="success", request_id="a")
    assert log.waiting == 0


def test_a_kept_record_survives_the_process_and_is_written_once_by_the_next(
        tmp_path: Path, log: AuditLog, store_away: Callable[[bool], None]) -> None:
    spool = tmp_path / "audit.waiting.jsonl"
    assert log.take_over_kept(spool) == 0
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_1")
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_2")
    store_away(True)
    log.record_finished_request(action="chat:create", outcome="success", request_id="req_1", details={"n": 7})
    assert len(spool.read_text().splitlines()) == 1 and stat.S_IMODE(spool.stat().st_mode) == 0o600
    log.close()  # the process ends with the store still away: the record stays in the spool only
    with spool.open("a") as f:
        f.write('{"cut by the cra')  # and the crash cut a second line short
    after = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        assert after.take_over_kept(spool) == 1
        closed = after.close_interrupted()
        assert [r.request_id for r in closed] == ["req_2"]  # req_1 got its kept record, not "interrupted"
        finals = [(r.request_id, r.outcome) for r in after.records() if r.outcome != STARTED]
        assert finals == [("req_1", "success"), ("req_2", "interrupted")]
        assert after.records()[2].details == {"n": 7} and after.verify().ok and not spool.exists()
        assert after.take_over_kept(spool) == 0
    finally:
        after.close()


def test_a_record_kept_by_a_replica_that_died_is_written_by_the_next_replica_once(
        tmp_path: Path, log: AuditLog, store_away: Callable[[bool], None]) -> None:
    """Replicas sharing the data directory keep one spool each, named by their process: the dead one's is taken over
    by the next to start (written once, gone after), and a running one's is not."""
    like = tmp_path / "audit.waiting.jsonl"
    assert log.take_over_kept(like, per_process=True) == 0
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_1")
    store_away(True)
    log.record_finished_request(action="chat:create", outcome="success", request_id="req_1", details={"n": 7})
    (spooled,) = tmp_path.glob("audit.waiting.*.jsonl")
    assert spooled.name == f"audit.waiting.{process_tag(this_process())}.jsonl"
    log.close()
    after = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        running = spooled.rename(like.with_name(f"audit.waiting.{process_tag(init_process())}.jsonl"))
        assert after.take_over_kept(like, per_process=True) == 0 and running.exists()  # its process is running
        running.rename(like.with_name(f"audit.waiting.{process_tag(ended_process())}.jsonl"))  # ... until it is gone
        assert after.take_over_kept(like, per_process=True) == 1
        assert after.close_interrupted() == []  # req_1 got its kept record
        assert [(r.request_id, r.outcome, r.details) for r in after.records()][1:] == [("req_1", "success", {"n": 7})]
        assert after.verify().ok and not list(tmp_path.glob("audit.waiting*"))
    finally:
        after.close()


def test_a_spooled_record_already_in_the_chain_is_not_written_twice(tmp_path: Path) -> None:
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_1")
        log.record_request(action="chat:create", outcome="success", request_id="req_1")
        line = {"ts": "2026-12-06T08:00:00.000000Z", "kind": "request", "action": "chat:create",
                "request_id": "req_1", "actor_key_id": None, "user_id": None, "resource": None, "model": None,
                "location": None, "label": None, "documents": "[]", "redactions": "{}", "outcome": "success",
                "reason": None, "details": "{}"}
        spool = tmp_path / "audit.waiting.jsonl"
        spool.write_text(json.dumps(line) + "\n" + json.dumps({**line, "extra": 1}) + "\n")
        assert log.take_over_kept(spool) == 0  # its request has its final record (a crash after writing it)
        assert log.count() == 2 and not spool.exists()
    finally:
        log.close()
