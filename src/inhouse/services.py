"""``Services``: every long-lived object of one process, typed, built once by ``bootstrap.build_services``.

The HTTP app (``api.app.build_app``), the web UI and every CLI command receive this one object and take what
they need from it; nothing else constructs a database, a registry, an engine or an assistant. Every field is
always present: tests wire the same ``build_services`` with fakes (a FakeBackend engine factory, the
FakeEmbedder, a temporary data directory) instead of leaving services out.

This module only declares the shape; importing it builds nothing (the imports below are for type checking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inhouse.apps.context import AppContexts
    from inhouse.apps.minutes.assistant import MinutesAssistant
    from inhouse.apps.outline.outline import OutlineAssistant
    from inhouse.apps.schedule.service import ScheduleService
    from inhouse.apps.support.assistant import SupportAssistant
    from inhouse.chat.service import ChatService
    from inhouse.config import Settings
    from inhouse.governance.answer_labels import AnswerLabels
    from inhouse.governance.audit import AuditLog, AuditRecord
    from inhouse.governance.directory import UserDirectory
    from inhouse.governance.egress.client import ExternalProviderClient
    from inhouse.governance.egress.router import EgressRouter
    from inhouse.governance.identity import KeyStore
    from inhouse.governance.quotas import QuotaService
    from inhouse.hardware.probe import HardwareProbe
    from inhouse.hardware.weights import WeightChoice
    from inhouse.kb.service import KnowledgeBase
    from inhouse.models.recommend import ModelRecommendation
    from inhouse.models.registry import ModelRegistry
    from inhouse.models.residency import ModelResidency
    from inhouse.models.tuning.profile import ProfileStore
    from inhouse.store.build import Stores
    from inhouse.store.conversations import ConversationStore
    from inhouse.store.responses import ResponseStore
    from inhouse.store.sqlite.database import Database


@dataclass(frozen=True)
class Assistants:
    """The assistants (``apps/``) and the per-call context they run in."""

    contexts: AppContexts  # the AppContext of one call: actor, chat service, model, time zone, knowledge, quota
    support: SupportAssistant  # customer service with human handoff; sessions in inhouse.db
    schedule: ScheduleService  # calendar, free slots, trips; events in inhouse.db
    minutes: MinutesAssistant  # meeting minutes from a transcript or a recording (Whisper)
    outline: OutlineAssistant  # a document's headings and key points


@dataclass(frozen=True)
class TakenOver:
    """What ``Services.take_over_previous_runs`` took over from earlier processes."""

    records: int  # kept final audit records, written now
    charges: int  # kept token charges, added now (or kept again while the store is away)
    interrupted: list[AuditRecord]  # the closing records of requests that never finished


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database  # <data_dir>/inhouse.db: the assistants' data; keys, users, groups, quotas, conversations too
    # unless store.url names PostgreSQL (docs/storage.md)
    audit: AuditLog  # audit.db (or PostgreSQL): the tamper-evident log (security events, one record per request)
    keys: KeyStore  # API keys (hashed); authenticate() on every request
    directory: UserDirectory  # users, groups, memberships
    quotas: QuotaService  # requests/minute (in memory, or shared in PostgreSQL) and tokens/day (the store) per key
    profiles: ProfileStore  # <data_dir>/profiles: tuned engine settings, applied when a model loads
    registry: ModelRegistry  # which models exist (catalog + <data_dir>/models/registry.json), which are loaded
    residency: ModelResidency  # idle release and the prewarm/release timetable (``serve`` starts it)
    chat: ChatService  # OpenAI request → template → tokens → validated sampling params → engine
    egress: EgressRouter  # where a chat request may run (external providers, PII redaction)
    answers: AnswerLabels  # labels of local answers given from labelled material, counted when they come back
    external: ExternalProviderClient  # the HTTP client of external providers (used only when the policy sends)
    kb: KnowledgeBase  # <data_dir>/kb.db: collections, documents, retrieval, grounded answers
    conversations: ConversationStore  # the web UI's chat history (inhouse.db)
    responses: ResponseStore  # stored Responses API answers, for previous_response_id (inhouse.db)
    probe: HardwareProbe  # <data_dir>/hardware: what this machine and llama.cpp build run (``inhouse doctor``)
    # The weight path each model was last loaded with, and why (filled by the llama engine factory; the dict
    # is shared and mutated, the field itself never changes).
    weight_choices: dict[str, WeightChoice]
    default_model: ModelRecommendation | None  # how models.default was chosen when it was "auto"
    assistants: Assistants
    stores: Stores  # what store.url chose (governance, conversations, audit); closed with the services

    def take_over_previous_runs(self, *, per_process: bool = False) -> TakenOver:
        """At start (``inhouse serve``, each cluster ingress replica): add the token charges and write the final
        audit records that earlier processes kept while their store was away (the spool files in the data
        directory), then close the requests they never finished as interrupted (``close_interrupted``).
        ``per_process``: processes share the data directory (a cluster's ingress replicas): this one's spool files
        are named by it, only those of processes that are gone are taken over, and only requests that name their
        process are closed (the other replicas' are being served)."""
        data_dir = self.settings.data_dir
        charges = self.quotas.take_over_kept(data_dir / "usage.waiting.jsonl", per_process=per_process)
        records = self.audit.take_over_kept(data_dir / "audit.waiting.jsonl", per_process=per_process)
        return TakenOver(records, charges, self.close_interrupted(processes_only=per_process))

    def close_interrupted(self, *, processes_only: bool = False) -> list[AuditRecord]:
        """Give the runs of an earlier process that never ended their final record (``AuditLog.close_interrupted``),
        naming the documents each committed from the knowledge index's run journal; then drop the journal entries
        of every run no longer open. The mark is read before the open runs: a run starting meanwhile writes its
        ``started`` record before its first entry, so its entries lie beyond the mark."""
        store = self.kb.store
        mark = store.journal_mark()
        closed = self.audit.close_interrupted(processes_only=processes_only, documents_of=store.run_changes)
        store.prune_journal({r.request_id for r in self.audit.unfinished() if r.request_id}, mark)
        return closed

    def close(self) -> None:
        self.residency.stop()
        self.kb.close()
        self.registry.close()
        self.stores.close()
        self.db.close()
        self.audit.close()
