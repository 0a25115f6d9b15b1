"""``AuditStoreContract``: the conformance suite every ``AuditStore`` passes, through ``AuditLog`` (appends, the
chain, the signed head, ``verify`` against tampering, concurrent writers). Subclass it and provide:

* ``open_log``: a fixture returning a function that opens an ``AuditLog`` on one fresh chain (every call, a new
  instance on the same chain: a second process, or a second node);
* ``delete_rows(log, first_seq, last_seq)`` and ``set_column(log, seq, column, value)``: the attacker, writing the
  rows behind the store's back (past its append-only guard) but without the key.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inhouse.errors import AuditUnavailable, InvalidRequest
from inhouse.governance.audit.chain import FIELDS, GENESIS, RESEALED, Head, canonical_json, record_hash
from inhouse.governance.audit.head import HeadSigner
from inhouse.governance.audit.log import INTERRUPTED, STARTED, AuditLog, AuditRecord
from inhouse.governance.audit.report import build_report, is_sent_out_sensitive
from inhouse.governance.events import SecurityEvent
from inhouse.governance.process import this_process
from inhouse.testing.crash import ended_process

OpenLog = Callable[[], AuditLog]


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        if i % 3 == 0:
            log.record(SecurityEvent("key.created", "key_admin", "usr_admin", f"key_{i:04d}",
                                     details={"name": f"key {i}", "role": "member"}, at=1_700_000_000 + i))
        else:
            log.record_request(action="chat:create", outcome="success", request_id=f"req_{i}",
                               actor_key_id=f"key_{i % 5}", user_id="usr_1", resource="POST /v1/chat/completions",
                               model="fake-model", location="local", label="internal",
                               documents=[f"doc_{i}", f"chk_{i}_0"], redactions={"email": i % 2},
                               details={"status": 200, "prompt_tokens": i, "ratio": i / 7}, at=1_700_000_000 + i)


def append_in_flight(log: AuditLog) -> contextlib.ExitStack:
    """Start an append on ``log``'s store and stop it between its head write and its commit (the window where the
    SQLite store's head file is ahead of its rows): the chain's write lock is held until the stack is closed, which
    commits it. What another process's append looks like to a reader in that window, without a thread."""
    stack = contextlib.ExitStack()
    tx = stack.enter_context(log.store.appending())
    tail = tx.tail()
    row: dict[str, Any] = {name: None for name in FIELDS}
    row.update(seq=tail.seq + 1 if tail else 1, prev_hash=tail.hash if tail else GENESIS, kind="request",
               ts="2023-11-14T22:13:20.000000Z", action="chat:create", outcome="success", documents="[]",
               redactions="{}", details="{}")
    row["hash"] = record_hash(row)
    tx.insert(row)
    tx.write_head(HeadSigner(log.key_path).sign(Head(row["seq"], row["hash"]), row))
    return stack


class _Snapshots:
    """``store`` as it is, except that ``opened`` is set once a snapshot is open (the seam a test waits on)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.opened = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def snapshot(self, **kwargs: Any) -> Iterator[Any]:
        with self._store.snapshot(**kwargs) as snap:
            self.opened.set()
            yield snap


_COUNTED = ("period", "records", "records_by_kind", "requests", "by_action", "confidential_sent_out")


def _walk(log: AuditLog, since: str | None) -> dict[str, Any]:
    """The report's counts by reading every record in order (the reference for ``build_report``)."""
    recs = list(log.iter_records(since=since))
    served = [r for r in recs if r.kind == "request" and r.outcome != STARTED]
    sent: dict[str, list[int]] = {}
    for r in recs:
        if is_sent_out_sensitive(r.location, r.label, r.outcome):
            sent.setdefault(r.request_id or f"seq:{r.seq}", []).append(r.seq)
    by_action: dict[str, dict[str, int]] = {}
    for r in recs:
        by_action.setdefault(r.action, {}).setdefault(r.outcome, 0)
        by_action[r.action][r.outcome] += 1
    return {
        "period": {"first": recs[0].ts if recs else None, "last": recs[-1].ts if recs else None},
        "records": len(recs),
        "records_by_kind": dict(sorted(Counter(r.kind for r in recs).items())),
        "requests": {
            "total": len(served),
            "by_destination": dict(sorted(Counter(r.location for r in served if r.location).items())),
            "without_model": sum(r.location is None for r in served),
            "interrupted": sum(r.outcome == INTERRUPTED for r in served),
            "unfinished": len(log.unfinished()),
            "external_by_label": dict(sorted(Counter((r.label or "unlabelled").lower() for r in served
                                                     if r.location not in (None, "local")).items())),
        },
        "by_action": {a: dict(sorted(c.items())) for a, c in sorted(by_action.items())},
        "confidential_sent_out": {"count": len(sent), "items": [{"item": k, "seqs": v} for k, v in sent.items()]},
    }


class AuditStoreContract:
    @pytest.fixture
    def open_log(self, tmp_path: Any) -> OpenLog:  # pragma: no cover - overridden
        raise NotImplementedError

    def delete_rows(self, log: AuditLog, first_seq: int, last_seq: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def set_column(self, log: AuditLog, seq: int, column: str, value: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    @pytest.fixture
    def log(self, open_log: OpenLog) -> Any:
        log = open_log()
        yield log
        log.close()

    def test_empty_log_verifies(self, log: AuditLog) -> None:
        report = log.verify()
        assert report.ok and report.records == 0 and report.message == "the log is empty"
        assert log.count() == 0 and log.head() is None

    def test_chain_links_and_security_event_mapping(self, log: AuditLog) -> None:
        log.record(SecurityEvent("egress.decision", "key_1", "usr_1", "req_9", outcome="denied",
                                 details={"request_id": "req_9", "destination": "cloud-gpt", "label": "confidential",
                                          "redactions": {"EMAIL": 2}, "reason": "label too high",
                                          "documents": ["doc_1"], "policy": "默认"}, at=1_700_000_000))
        rec = log.record_request(action="chat:create", outcome="success", request_id="req_9", model="m",
                                 location="local", label="confidential")
        first, second = log.records()
        assert first.prev_hash == GENESIS and second.prev_hash == first.hash and second == rec
        assert first.kind == "security" and first.location == "cloud-gpt" and first.redactions == {"EMAIL": 2}
        assert first.details == {"policy": "默认"} and first.ts == "2023-11-14T22:13:20.000000Z"
        head = log.head()
        assert head is not None and (head.seq, head.hash) == (2, second.hash)

    def test_filters_export_and_third_party_verification(self, log: AuditLog) -> None:
        fill(log, 12)
        assert [r.seq for r in log.records(action="key.created")] == [1, 4, 7, 10]
        assert [r.seq for r in log.records(actor="key_2")] == [3, 8]
        assert [r.seq for r in log.records(limit=3, newest_first=True)] == [12, 11, 10]
        assert [r.seq for r in log.records(since="2023-11-14T22:13:30.000000Z")] == [11, 12]
        assert [r.seq for r in log.records(until="2023-11-14T22:13:22.000000Z")] == [1, 2]
        assert [r.seq for r in log.records(kind="security", after_seq=4)] == [7, 10]
        exported = [json.loads(json.dumps(d)) for d in log.export()]
        prev = GENESIS
        for d in exported:
            stored = {**d, **{k: canonical_json(d[k]) for k in ("documents", "redactions", "details")}}
            assert stored["prev_hash"] == prev and record_hash(stored) == d["hash"]
            prev = d["hash"]
        assert len(exported) == 12 and log.verify().ok and log.verify().records == 12

    def test_records_are_found_by_the_documents_they_name(self, log: AuditLog) -> None:
        for docs in (["doc_a1", "doc_b2"], ["doc_ab1"], [], ["doc_a1"], ["xdoc_a1"]):
            log.record_request(action="kb:read", outcome="success", documents=docs)
        assert [r.seq for r in log.records(document="doc_a1")] == [1, 4]  # whole ids, not parts of one
        assert [r.seq for r in log.records(document="doc_a_1")] == []  # "_" is no wildcard
        assert [r.seq for r in log.records(document="doc_%")] == []
        assert [d["seq"] for d in log.export(document="doc_b2")] == [1]

    def test_bad_records_are_refused_and_nothing_is_written(self, log: AuditLog) -> None:
        with pytest.raises(ValueError, match="secret"):
            log.record(SecurityEvent("key.created", None, None, "key_1", details={"secret": "ih_x"}))
        with pytest.raises(ValueError):
            log.record_request(action="chat:create", outcome="success", redactions={"alice@example.com": 1})
        assert log.count() == 0

    def test_concurrent_appends_from_threads_and_two_instances(self, open_log: OpenLog) -> None:
        a, b = open_log(), open_log()
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
            assert a.verify().ok and b.verify().ok and b.verify().records == 60
        finally:
            a.close()
            b.close()

    def test_verify_during_an_append_in_flight_finds_the_chain_intact(self, open_log: OpenLog) -> None:
        """Another process's append is between its head write and its commit when verify takes its snapshot: the
        chain is intact, never reported cut (the SQLite store's head file is ahead then; PostgreSQL's is not)."""
        reader, writer = open_log(), open_log()
        try:
            fill(writer, 3)
            seam = _Snapshots(reader.store)
            reader.store = seam
            results: list[Any] = []
            with append_in_flight(writer) as in_flight:
                verifier = threading.Thread(target=lambda: results.append(reader.verify()))
                verifier.start()
                assert seam.opened.wait(10)  # its first snapshot is taken with the append in flight
                in_flight.close()  # the commit
            verifier.join(30)
            assert len(results) == 1 and results[0].ok, results
            assert results[0].records in (3, 4)
            assert reader.verify().records == 4
        finally:
            reader.close()
            writer.close()

    @pytest.mark.parametrize(("tamper", "kind", "seq"), [
        ("set_column", "modified", 4), ("set_details", "modified", 7), ("delete_one", "deleted", 5),
        ("truncate", "truncated", 9)])
    def test_tampering_is_found_where_it_happened(self, log: AuditLog, tamper: str, kind: str, seq: int) -> None:
        fill(log, 12)
        if tamper == "set_column":
            self.set_column(log, seq, "outcome", "forged")
        elif tamper == "set_details":
            self.set_column(log, seq, "details", '{"forged":true}')
        elif tamper == "delete_one":
            self.delete_rows(log, seq, seq)
        else:
            self.delete_rows(log, seq, 12)
        report = log.verify()
        assert not report.ok and (report.kind, report.first_broken_seq) == (kind, seq), report

    def test_appends_are_refused_after_truncation_until_a_reseal(self, log: AuditLog) -> None:
        fill(log, 10)
        self.delete_rows(log, 8, 10)
        with pytest.raises(AuditUnavailable, match="signed head"):
            log.record_request(action="chat:create", outcome="success")
        assert log.count() == 7
        with pytest.raises(InvalidRequest):
            log.reseal("  ")
        rec = log.reseal("truncation investigated in ticket 123", actor_key_id="key_admin")
        assert rec.seq == 8 and rec.action == RESEALED and rec.details["previous_head"]["seq"] == 10
        log.record_request(action="chat:create", outcome="success")
        report = log.verify()
        assert report.ok and report.reseals == 1 and report.records == 9

    def test_the_last_record_comes_back_from_the_signed_head(self, open_log: OpenLog) -> None:
        """The head holds its record (signed): a last record that is missing (a crash between head write and commit
        where the head is a file; a deletion anywhere) is put back when the log is opened, or before an append."""
        log = open_log()
        try:
            fill(log, 6)
            original = log.records()[-1]
            self.delete_rows(log, 6, 6)
            assert log.count() == 5
            log.record_request(action="chat:create", outcome="success")  # finished first, then appended
            assert [r.seq for r in log.records()][-2:] == [6, 7] and log.records()[5] == original
            self.delete_rows(log, 7, 7)
        finally:
            log.close()
        again = open_log()  # opening finishes it too
        try:
            report = again.verify()
            assert report.ok and report.records == 7 and report.reseals == 0, report
        finally:
            again.close()

    def test_unfinished_requests_are_closed_as_interrupted_once(self, log: AuditLog) -> None:
        for rid in ("req_a", "req_b", "req_c"):
            log.record_request(action="chat:create", outcome=STARTED, request_id=rid, model="m", location="local")
        log.record_request(action="chat:create", outcome="success", request_id="req_b", model="m", location="local")
        assert [r.request_id for r in log.unfinished()] == ["req_a", "req_c"]
        closed = log.close_interrupted()
        assert [(r.request_id, r.outcome, r.details["started_seq"]) for r in closed] == [
            ("req_a", INTERRUPTED, 1), ("req_c", INTERRUPTED, 3)]
        assert log.unfinished() == [] and log.close_interrupted() == [] and log.verify().ok

    def test_the_closing_record_names_what_the_run_journal_holds(self, log: AuditLog) -> None:
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_upload", documents=["doc_a"])
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_nothing")
        journal = {"req_upload": [("doc_a", "relabelled"), ("doc_b", "relabelled"), ("doc_c", "added"),
                                  ("doc_c", "moved")]}
        closed = log.close_interrupted(documents_of=lambda rid: journal.get(rid, []))
        assert [(r.request_id, list(r.documents)) for r in closed] == [
            ("req_upload", ["doc_a", "doc_b", "doc_c"]), ("req_nothing", [])]
        assert closed[0].details == {"started_seq": 1, "relabelled": 2, "added": 1, "moved": 1,
                                     "documents_not_listed": 0}
        assert closed[1].details == {"started_seq": 2, "documents_not_listed": 0}
        assert [r.seq for r in log.records(document="doc_c")] == [closed[0].seq] and log.verify().ok

    def test_a_command_run_is_closed_only_once_its_process_is_gone(self, log: AuditLog) -> None:
        """``inhouse ingest`` writes a started record naming its process: a server starting meanwhile (or another
        command) leaves the run alone while the process lives, and closes it once the process is gone."""
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_served")
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_running",
                           details={"process": this_process()})  # this test's process: alive
        dead = ended_process()
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_killed", details={"process": dead})
        reused = {**this_process(), "start": (this_process()["start"] or 0) + 1}  # this pid, another start
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_reused", details={"process": reused})
        elsewhere = {**dead, "host": "another-host.invalid"}  # cannot be told from here: left alone
        log.record_request(action="kb:write", outcome=STARTED, request_id="req_elsewhere",
                           details={"process": elsewhere})

        closed = log.close_interrupted(processes_only=True)  # what `inhouse ingest` does when it starts
        assert [r.request_id for r in closed] == ["req_killed", "req_reused"]
        assert all(r.outcome == INTERRUPTED and "command" in (r.reason or "") for r in closed)
        closed = log.close_interrupted()  # what `inhouse serve` does when it starts
        assert [r.request_id for r in closed] == ["req_served"]
        assert closed[0].reason == "the server stopped before the request finished"
        assert {r.request_id for r in log.unfinished()} == {"req_running", "req_elsewhere"} and log.verify().ok

    def test_a_node_closes_only_its_own_unfinished_requests(self, open_log: OpenLog) -> None:
        """Several nodes share one chain: a node that restarts must not end requests another node is serving. Each
        started record names its node and its process; one whose process is gone is closed by whichever node starts
        next on that host (a cluster's ingress replica comes back under another node name)."""
        a, b, c = open_log(), open_log(), open_log()
        a.node, b.node, c.node = "host/ingress-1", "host/ingress-2", "host/ingress-3"
        dead = ended_process()
        try:
            a.record_request(action="chat:create", outcome=STARTED, request_id="req_a", details={"process": dead})
            b.record_request(action="chat:create", outcome=STARTED, request_id="req_b")  # this process: serving
            c.record_request(action="kb:write", outcome=STARTED, request_id="req_cli",  # `inhouse ingest` on a node
                             details={"via": "cli", "process": dead})
            b.record_request(action="chat:create", outcome=STARTED, request_id="req_legacy",
                             details={"process": None})  # written before records named their process
            assert a.records()[0].details == {"node": "host/ingress-1", "process": dead}
            assert b.records()[1].details == {"node": "host/ingress-2", "process": this_process()}
            # c replaced a: it closes a's request (its process is gone), not b's (alive) nor the legacy one (a node
            # closes only its own of those).
            closed = c.close_interrupted(processes_only=True)
            assert [(r.request_id, r.reason) for r in closed] == [
                ("req_a", f"the server's process ({dead['pid']}) stopped before the request finished"),
                ("req_cli", f"the command's process ({dead['pid']}) stopped before the run finished")]
            assert a.close_interrupted(processes_only=True) == []  # closed once
            assert [r.request_id for r in a.unfinished()] == ["req_b", "req_legacy"]
            assert [r.request_id for r in b.close_interrupted()] == ["req_legacy"]
            assert [r.request_id for r in a.unfinished()] == ["req_b"] and a.verify().ok
        finally:
            a.close()
            b.close()
            c.close()

    def test_two_processes_closing_one_request_write_one_record(self, open_log: OpenLog) -> None:
        a, b = open_log(), open_log()
        try:
            a.record_request(action="chat:create", outcome=STARTED, request_id="req_x",
                             details={"process": ended_process()})
            stale = a.unfinished()  # what both read before either writes
            closed: list[list[AuditRecord]] = []
            barrier = threading.Barrier(2)

            def close(log: AuditLog) -> None:
                barrier.wait()
                closed.append(log.close_interrupted(processes_only=True))

            original = a.unfinished
            for log in (a, b):
                log.unfinished = lambda: stale  # type: ignore[method-assign]
            threads = [threading.Thread(target=close, args=(log,)) for log in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(len(c) for c in closed) == [0, 1]  # one wrote it, the other found it closed
            a.unfinished = original  # type: ignore[method-assign]
            assert a.unfinished() == [] and [r.outcome for r in a.records()] == [STARTED, INTERRUPTED]
        finally:
            a.close()
            b.close()

    def test_the_report_counts_what_a_walk_of_every_record_counts(self, log: AuditLog) -> None:
        """The report's counts come from the database's GROUP BY; a plain walk over the records is the reference."""
        fill(log, 9)
        rows = [("local", "confidential", STARTED), ("local", "confidential", "success"), ("cloud", "Confidential",
                "success"), ("cloud", "confidential", "error"), ("cloud", "public", "success"), (None, None, "success"),
                ("other", "RESTRICTED", STARTED), ("other", "restricted", "denied"), ("cloud", None, INTERRUPTED)]
        for i, (location, label, outcome) in enumerate(rows):
            log.record_request(action="chat:create", outcome=outcome, request_id=f"r{i % 4}", location=location,
                               label=label, at=1_700_000_100 + i)
        log.record(SecurityEvent("egress.decision", None, None, "m", outcome="success",
                                 details={"destination": "cloud", "label": "restricted"}, at=1_700_000_200))
        for since in (None, "2023-11-14T22:13:25.000000Z", "2023-11-14T22:15:03.000000Z", "2030-01-01T00:00:00Z"):
            report = build_report(log, since=since, now=0)
            assert {k: report[k] for k in _COUNTED} == _walk(log, since), since
        sent = build_report(log, now=0)["confidential_sent_out"]
        assert sent == {"count": 3, "items": [{"item": "r2", "seqs": [12]}, {"item": "r3", "seqs": [13]},
                                              {"item": "seq:19", "seqs": [19]}]}

    def test_closed_log_refuses(self, open_log: OpenLog) -> None:
        log = open_log()
        log.close()
        with pytest.raises(AuditUnavailable):
            log.record_request(action="x", outcome="success")
