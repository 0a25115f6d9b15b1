"""The composition root: every service is built here from the settings and handed down explicitly.

Nothing else in the package constructs a database, a registry or an engine on its own; the CLI and the
HTTP app receive a ``Services`` object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inhouse.chat.service import ChatService
from inhouse.config import Settings
from inhouse.engine.process import CrashHook, EngineCrash, EngineRecipe, RestartHook, start_engine
from inhouse.engine.protocol import EngineClient
from inhouse.governance.audit import ENGINE_CRASHED, MODEL_LOADED, AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.governance.egress.client import ExternalProviderClient
from inhouse.governance.egress.router import EgressRouter, build_egress_router
from inhouse.governance.events import AuditSink
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.hardware.cpu import detect_cpu
from inhouse.kb.service import KnowledgeBase, build_knowledge_base
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency
from inhouse.models.spec import ModelSpec
from inhouse.models.timetable import Timetable
from inhouse.models.tuning.profile import ProfileStore, tuned_settings
from inhouse.store.conversations import ConversationStore
from inhouse.store.db import Database

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelSpec], EngineClient]


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyStore
    directory: UserDirectory
    quotas: QuotaService
    registry: ModelRegistry
    chat: ChatService
    egress: EgressRouter  # where each chat request may run (external providers, PII redaction)
    external: ExternalProviderClient
    audit: AuditLog  # the tamper-evident log (<data_dir>/audit.db): security events and one record per request
    kb: KnowledgeBase | None = None  # company knowledge: index store (<data_dir>/kb.db), embedder, retrieval
    profiles: ProfileStore | None = None  # tuned profiles (<data_dir>/profiles), applied when a model loads
    residency: ModelResidency | None = None  # idle release and the prewarm/release schedule (serve starts it)
    conversations: ConversationStore | None = None  # chat history of the web UI (same database)

    def close(self) -> None:
        if self.residency is not None:
            self.residency.stop()
        if self.kb is not None:
            self.kb.close()
        self.registry.close()
        self.db.close()
        self.audit.close()


def build_llama_engine_factory(settings: Settings, profiles: ProfileStore | None = None,
                               variant_path: Callable[[str, str], Path] | None = None, *,
                               on_crash: Sequence[CrashHook] = (),
                               before_restart: RestartHook | None = None) -> EngineFactory:
    """Load a model into llama.cpp (lazily imported: `inhouse --help` must not pay for it), with its tuned
    profile applied when one matches this CPU (``variant_path`` resolves a profile's re-quantized weights).

    With ``engine.isolation = "process"`` (the default) the engine runs in a supervised child process
    (engine/process.py): ``on_crash`` hooks hear of every crash (the audit record), and ``before_restart`` may
    return another recipe for the restart (the safe fallback of the hardware probe)."""

    def load(spec: ModelSpec) -> EngineClient:
        assert spec.path is not None, "the registry only loads present models"
        es, path = settings.engine, spec.path
        if profiles is not None:
            es, path = tuned_settings(profiles.match(spec.sha256), es, path, variant_path)
        n_ctx = es.n_ctx if not spec.context_length else min(es.n_ctx, spec.context_length)
        log.info("loading model %s from %s (n_ctx=%d, %s)", spec.name, path, n_ctx,
                 "child process" if es.isolation == "process" else "in-process")
        engine: EngineClient = start_engine(EngineRecipe(spec.name, path, es, n_ctx), on_crash=on_crash,
                                            before_restart=before_restart)
        return engine

    return load


def audit_crashes(audit: AuditLog) -> CrashHook:
    """One security record per engine crash: the model, the signal, what happened to the requests in flight and
    whether the engine restarts (with a fallback recipe or not)."""

    def record(crash: EngineCrash) -> None:
        audit.append(kind="security", action=ENGINE_CRASHED, resource=crash.model, model=crash.model,
                     location="local", outcome="failure", reason=crash.reason,
                     details={"pid": crash.pid, "returncode": crash.returncode, "in_flight": crash.in_flight,
                              "crashes_in_window": crash.crashes_in_window, "restarting": crash.restarting,
                              "fallback": crash.fallback is not None})

    return record


def audited_loads(load: EngineFactory, audit: AuditLog) -> EngineFactory:
    """Record every model load (name, pinned sha256, source). A load that cannot be recorded fails."""

    def load_and_record(spec: ModelSpec) -> EngineClient:
        details = {"sha256": spec.sha256, "source": spec.source, "size_bytes": spec.size_bytes}
        try:
            engine = load(spec)
        except Exception as exc:
            audit.append(kind="security", action=MODEL_LOADED, resource=spec.name, model=spec.name,
                         location="local", outcome="failure", reason=type(exc).__name__, details=details)
            raise
        try:
            audit.append(kind="security", action=MODEL_LOADED, resource=spec.name, model=spec.name,
                         location="local", outcome="success", details=details)
        except BaseException:
            close = getattr(engine, "close", None)
            if close is not None:
                close()
            raise
        return engine

    return load_and_record


def build_services(settings: Settings, *, load_engine: EngineFactory | None = None) -> Services:
    """Open (and migrate) the database, the key store, the model registry and the chat service."""
    ms = settings.models
    timetable = Timetable.parse(ms.prewarm, ms.release)  # a bad entry fails here, before anything is opened
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.model_cache_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_path)
    db.migrate()
    # Every security action (users, groups, memberships, keys, egress decisions, model loads) is recorded
    # here; a failed write makes the action fail.
    audit = AuditLog(settings.data_dir / "audit.db")
    audit_sink: AuditSink = audit
    gs = settings.governance
    keys = KeyStore(db, audit=audit_sink, max_keys_per_user=gs.max_keys_per_user)
    directory = UserDirectory(db, audit=audit_sink)
    quotas = QuotaService(db, default_rpm=gs.default_rpm, default_tokens_per_day=gs.default_tokens_per_day)
    profiles = ProfileStore(settings.data_dir / "profiles", lambda: detect_cpu().signature)
    registry: ModelRegistry | None = None

    def variant_path(name: str, sha256: str) -> Path:
        assert registry is not None
        return registry.verified_path(name, sha256)

    registry = ModelRegistry(
        cache_dir=settings.model_cache_dir,
        load_engine=audited_loads(load_engine or build_llama_engine_factory(
            settings, profiles, variant_path, on_crash=[audit_crashes(audit)]), audit),
        ram_budget_mb=settings.models.ram_budget_mb,
    )
    chat = ChatService(registry, settings.engine)
    residency = ModelResidency(registry, idle_release_s=ms.idle_release_s, timetable=timetable,
                               prewarm_models=lambda: list(dict.fromkeys([ms.default, *ms.preload])))
    egress = build_egress_router(
        gs, settings.data_dir, audit_sink, is_local=lambda name: name in registry.names(),
        local_model=lambda: settings.models.default,
        names=lambda: [u.display_name for u in directory.list_users()],
    )
    # The index opens in milliseconds and the embedder maps its weights lazily, so the CLI can afford it.
    kb = build_knowledge_base(settings, chat=chat)
    return Services(settings=settings, db=db, keys=keys, directory=directory, quotas=quotas, registry=registry,
                    chat=chat, egress=egress, external=ExternalProviderClient(), audit=audit, kb=kb,
                    profiles=profiles, residency=residency, conversations=ConversationStore(db))
