"""Audit records of what commands do, as the same actions over HTTP are recorded: ``CommandRun`` for a change to
the knowledge index, ``ReadRun`` for a read (a search, an answer, an assistant's turn), and ``acting_as`` for the actor
a command runs as (the local admin, or a ``--key`` checked as HTTP checks it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from inhouse.cli.common import CLI_ACTOR, err_console, esc
from inhouse.errors import AuditUnavailable, AuthenticationFailed, InhouseError, PermissionDenied
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.kb.retrieve import Hit
    from inhouse.services import Services


def acting_as(services: Services, key: str | None, action: str, resource: str) -> Actor:
    """The actor of a command: the local admin (whoever may open the data directory is), or the ``--key`` given,
    which must be valid and whose role and scopes must allow ``action``, as over HTTP (a widget's key scoped to
    ``apps:support`` cannot search). A refused key is recorded ``denied``, as the same request over HTTP is: by no
    key when the secret is not a valid key, else by that key."""
    from inhouse.chat.service import new_request_id
    from inhouse.governance.acl import require_allowed

    if not key:
        return CLI_ACTOR
    actor: Actor | None = None
    try:
        actor = services.keys.authenticate(key)
        require_allowed(actor, action)
    except (AuthenticationFailed, PermissionDenied) as exc:
        services.audit.record_request(
            action=action, outcome="denied", request_id=new_request_id(),
            actor_key_id=actor.key_id if actor else None, user_id=actor.user_id if actor else None,
            resource=resource, reason=exc.code, details={"via": "cli"})
        raise
    return actor


class CommandRun:
    """A command that changes the knowledge index, in the audit log as the same change over HTTP is recorded
    (actor ``key_cli``; ``ReadRun``: a read, whose actor may be a ``--key``): a ``started`` record before anything
    changes (if it cannot be written, nothing is changed), then one final record naming the documents the command
    changed, from the run journal the store fills in each change's own transaction (so a document a command deleted
    or relabelled is found by ``inhouse audit export --document``): ``success``, or ``interrupted`` (Ctrl-C, SIGTERM)
    or ``error`` with the documents changed until then. A command killed outright keeps its ``started`` record,
    closed as interrupted by the next ``inhouse serve`` or command (its record names its process, so a command still
    going is left alone)."""

    def __init__(self, services: Services, *, action: str, resource: str,
                 details: dict[str, object] | None = None, actor: Actor = CLI_ACTOR, ahead: bool = True) -> None:
        from inhouse.chat.service import new_request_id

        self.services = services
        self.audit = services.audit
        self.request_id = new_request_id()  # the ``run=`` of every change the command makes
        self.action = action
        self.resource = resource
        self.details: dict[str, object] = {"via": "cli", **(details or {})}
        self.actor = actor
        self.ahead = ahead  # False: no ``started`` record, only the final one (a search: quick, changes nothing)
        self.model: str | None = None
        self.label: str | None = None

    def note(self, **details: object) -> None:
        """Add to the final record's ``details`` (what changed: before and after)."""
        self.details.update(details)

    @contextlib.contextmanager
    def recorded(self) -> Iterator[None]:
        from inhouse.governance.audit.log import INTERRUPTED, STARTED
        from inhouse.governance.process import this_process

        if self.ahead:
            closed = self.services.close_interrupted(processes_only=True)
            if closed:
                err_console.print(f"{len(closed)} earlier command run(s) stopped before they finished; recorded as "
                                  "interrupted in the audit log.", highlight=False)
            self._record(STARTED, [], {**self.details, "process": this_process()})
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                outcome, reason = INTERRUPTED, "stopped by Ctrl-C or SIGTERM"
            elif isinstance(exc, InhouseError):
                outcome = {"invalid_request_error": "failure", "permission_error": "denied"}.get(exc.type, "error")
                reason = exc.message
            else:
                outcome, reason = "error", type(exc).__name__
            try:
                self._finish(outcome, reason=reason)
            except AuditUnavailable as failed:  # the run's own error is the one to report
                err_console.print(f"the run's final audit record could not be written ({esc(failed.message)}); its "
                                  "started record is closed as interrupted by the next serve or ingest",
                                  highlight=False)
            raise
        self._finish("success")

    def _finish(self, outcome: str, *, reason: str | None = None) -> None:
        from inhouse.governance.audit.log import MAX_RECORD_DOCUMENTS

        changed = self._changed()
        self._record(outcome, changed[:MAX_RECORD_DOCUMENTS], self._final_details(len(changed)), reason=reason)
        self._forget()

    def _forget(self) -> None:
        try:  # the final record names the run's documents: its journal entries are done with
            self.services.kb.store.forget_run(self.request_id)
        except InhouseError as exc:  # the next serve or ingest drops them (``Services.close_interrupted``)
            err_console.print(f"the run's journal entries stay until the next run: {esc(exc.message)}",
                              highlight=False)

    def _record(self, outcome: str, documents: list[str], details: dict[str, object], *,
                reason: str | None = None) -> None:
        self.audit.record_request(action=self.action, outcome=outcome, request_id=self.request_id,
                                  actor_key_id=self.actor.key_id, user_id=self.actor.user_id, resource=self.resource,
                                  model=self.model, label=self.label, documents=documents, reason=reason,
                                  details=details)

    def _journal(self) -> list[tuple[str, str]]:
        try:
            return self.services.kb.store.run_changes(self.request_id)
        except InhouseError:  # the store is away (the run's error, likely): its outcomes are what is known
            return []

    def _changed(self) -> list[str]:
        """The documents the run changed, in order."""
        return list(dict.fromkeys(doc_id for doc_id, _ in self._journal()))

    def _final_details(self, listed: int) -> dict[str, object]:
        from inhouse.governance.audit.log import changed_documents

        return {**self.details, **changed_documents(self._journal(), listed)}


class ReadRun(CommandRun):
    """``inhouse search``, ``ask``, ``support`` and ``schedule`` recorded as the same requests over HTTP (``POST
    /v1/search``, a chat completion with ``knowledge``, a support message, a schedule route): by the acting key
    (``key_cli``, or the ``--key`` given, with its user), ``documents`` those whose snippets the search returned or
    whose passages the answer gave the model (so ``inhouse audit export --document`` finds who read a document from
    the command line too), ``label`` the most sensitive of them. A search is one record, written before its results
    are shown (no record, nothing shown: exit 5); an answer is a generation, written ahead (``ahead``) like one over
    HTTP. A read changes nothing: no run journal."""

    def __init__(self, services: Services, actor: Actor, *, action: str, resource: str, ahead: bool,
                 details: dict[str, object] | None = None, model: str | None = None) -> None:
        super().__init__(services, action=action, resource=resource, details=details, actor=actor, ahead=ahead)
        self.model = model
        self.documents: list[str] = []

    def read(self, hits: Sequence[Hit]) -> None:
        """The passages returned or given to the model: their documents and the most sensitive label."""
        from inhouse.governance.labels import max_label

        self.read_documents([h.chunk.document_id for h in hits],
                            max_label(h.chunk.label for h in hits).value if hits else None)

    def read_documents(self, documents: Sequence[str], label: str | None = None) -> None:
        """Documents read by an assistant's turn (a support answer's passages, a trip's travel policy)."""
        self.documents = list(dict.fromkeys(documents))
        self.label = label

    def _changed(self) -> list[str]:
        return self.documents

    def _final_details(self, listed: int) -> dict[str, object]:
        from inhouse.governance.audit.log import MAX_RECORD_DOCUMENTS

        return {**self.details, "documents_not_listed": max(0, listed - MAX_RECORD_DOCUMENTS)}

    def _forget(self) -> None:
        pass
