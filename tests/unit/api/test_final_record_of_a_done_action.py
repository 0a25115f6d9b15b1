"""A request whose `started` record is written has done its action (an upload committed, tokens generated) by the time
its final record is written. When the audit store cannot take that record for now (the disk full, the database
away), the record is kept and written before the next one, and the caller gets the real answer. Before 2026-12-07
the answer was replaced with 507 (503 on PostgreSQL) "nothing was recorded, so nothing was done" although the
document was stored, and the chain held only the `started` record until a restart closed it as `interrupted`."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.errors import AuditStoreUnavailable, AuditUnavailable
from inhouse.governance.audit import STARTED, AuditLog
from inhouse.governance.audit.store import append_failed
from inhouse.store.sqlite.audit import open_sqlite_audit_log

MODEL = "fake-model"  # the conftest's model


@pytest.fixture
def audited(make_services: Any) -> Iterator[Any]:
    s = make_services()
    audit = open_sqlite_audit_log(s.settings.data_dir / "under-test" / "audit.db")
    yield replace(s, audit=audit)
    audit.close()


@pytest.fixture
def admin(audited: Any) -> Iterator[TestClient]:
    with TestClient(build_app(audited), headers={"Authorization": f"Bearer {audited.admin_key}"}) as c:
        yield c


def disk_full(audit: AuditLog) -> AuditUnavailable:
    return append_failed("The audit record could not be written",
                         OSError(errno.ENOSPC, "No space left on device"), audit.store.path.parent)


def database_away(audit: AuditLog) -> AuditUnavailable:
    # What the PostgreSQL audit store raises when its session was ended (pg_terminate_backend, a restart).
    return AuditStoreUnavailable("The audit log cannot be written: the database cannot be reached right now "
                                 "(nothing was recorded, so nothing was done; retry shortly).")


class FailingAfter:
    """The audit store takes ``n`` more appends, then refuses every one with ``fault`` until ``heal()``."""

    def __init__(self, audit: AuditLog, fault: Callable[[AuditLog], AuditUnavailable],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.left: int | None = None
        appending = audit.store.appending

        @contextmanager
        def failing() -> Iterator[Any]:
            if self.left is not None:
                if self.left <= 0:
                    raise fault(audit)
                self.left -= 1
            with appending() as tx:
                yield tx

        monkeypatch.setattr(audit.store, "appending", failing)

    def after(self, n: int) -> None:
        self.left = n

    def heal(self) -> None:
        self.left = None


def upload(admin: TestClient, services: Any) -> tuple[Any, Callable[[Any], None]]:
    col = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]

    def request() -> Any:
        return admin.post(f"/v1/collections/{col}/documents", files={"file": ("leave.md", b"# Leave\n\n18 days.\n")})

    def check(resp: Any) -> None:
        assert resp.status_code == 201, resp.text
        (doc,) = services.kb.store.list_documents(col)  # stored (the API is refused while the store is away)
        assert resp.json()["id"] == doc.id

    return request, check


def chat(admin: TestClient, services: Any) -> tuple[Any, Callable[[Any], None]]:
    def request() -> Any:
        messages = [{"role": "user", "content": "Hi"}]
        return admin.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})

    def check(resp: Any) -> None:
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"]

    return request, check


@pytest.mark.parametrize("fault", [disk_full, database_away])
@pytest.mark.parametrize("kind", [upload, chat])
def test_the_final_record_is_kept_and_the_real_answer_sent(
        kind: Callable[[TestClient, Any], tuple[Any, Callable[[Any], None]]],
        fault: Callable[[AuditLog], AuditUnavailable], audited: Any, admin: TestClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    audit: AuditLog = audited.audit
    request, check = kind(admin, audited)
    store = FailingAfter(audit, fault, monkeypatch)
    store.after(1)  # the started record is written, then the store turns away
    resp = request()
    check(resp)  # not 507 / 503 "nothing was done"
    assert audit.waiting == 1
    (started,) = audit.unfinished()
    store.heal()
    assert admin.get("/v1/models").status_code == 200  # its record is written first, the kept one before it
    assert audit.waiting == 0 and audit.unfinished() == []
    ours = [r for r in audit.records() if r.request_id == started.request_id]
    assert [r.outcome for r in ours] == [STARTED, "success"] and ours[1].details["status"] == resp.status_code
    assert audit.verify().ok


def test_a_read_whose_record_fails_is_still_refused(audited: Any, admin: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No `started` record, nothing done: the answer is held back and the caller told (the rule stands)."""
    FailingAfter(audited.audit, disk_full, monkeypatch).after(0)
    resp = admin.get("/v1/models")
    assert resp.status_code == 507 and resp.json()["error"]["code"] == "storage_full"
    assert audited.audit.waiting == 0
