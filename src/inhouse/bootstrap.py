"""The composition root: every service is built here from the settings and handed down explicitly.

Nothing else in the package constructs a database, a registry or an engine on its own; the CLI and the
HTTP app receive a ``Services`` object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inhouse.chat.service import ChatService
from inhouse.config import EngineSettings, Settings
from inhouse.engine.protocol import EngineClient
from inhouse.governance.audit import MODEL_LOADED, AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.governance.egress.client import ExternalProviderClient
from inhouse.governance.egress.router import EgressRouter, build_egress_router
from inhouse.governance.events import AuditSink
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.hardware.cpu import detect_cpu
from inhouse.hardware.probe import HardwareProbe
from inhouse.hardware.weights import WeightChoice, resolve_engine_settings
from inhouse.kb.service import KnowledgeBase, build_knowledge_base
from inhouse.models.recommend import ModelRecommendation, recommend_model
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
    probe: HardwareProbe | None = None  # the hardware probe (<data_dir>/hardware): what this machine runs
    # The weight path each model was last loaded with, and why (filled by the llama engine factory).
    weight_choices: dict[str, WeightChoice] = field(default_factory=dict)
    default_model: ModelRecommendation | None = None  # how models.default was chosen when it was "auto"

    def close(self) -> None:
        if self.residency is not None:
            self.residency.stop()
        if self.kb is not None:
            self.kb.close()
        self.registry.close()
        self.db.close()
        self.audit.close()


def build_probe(settings: Settings) -> HardwareProbe:
    """The hardware probe of this data directory (its answers are cached in ``<data_dir>/hardware``)."""
    return HardwareProbe(settings.data_dir / "hardware")


def build_llama_engine_factory(settings: Settings, profiles: ProfileStore | None = None,
                               variant_path: Callable[[str, str], Path] | None = None,
                               probe: HardwareProbe | None = None,
                               choices: dict[str, WeightChoice] | None = None) -> EngineFactory:
    """Load a model into llama.cpp (lazily imported: `inhouse --help` must not pay for it), with its tuned
    profile applied when one matches this CPU (``variant_path`` resolves a profile's re-quantized weights) and
    ``engine.weight_buffers`` resolved against the hardware probe (run on the first load if never run on this
    machine and build). The resolved settings are what ``build_llama_engine`` receives, whole."""
    probe = probe or build_probe(settings)

    def load(spec: ModelSpec) -> EngineClient:
        from inhouse.engine.build import build_llama_engine

        es, path, choice = engine_settings_for(spec, settings, probe, profiles, variant_path)
        if choices is not None:
            choices[spec.name] = choice
        n_ctx = es.n_ctx if not spec.context_length else min(es.n_ctx, spec.context_length)
        log.info("loading model %s from %s (n_ctx=%d); weight buffers %s: %s", spec.name, path, n_ctx,
                 choice.value, choice.reason)
        return build_llama_engine(spec.name, path, es, n_ctx=n_ctx)

    return load


def engine_settings_for(spec: ModelSpec, settings: Settings, probe: HardwareProbe,
                        profiles: ProfileStore | None = None,
                        variant_path: Callable[[str, str], Path] | None = None,
                        ) -> tuple[EngineSettings, Path, WeightChoice]:
    """What a model is loaded with: the engine settings with its tuned profile applied (and the profile's
    weights file), ``weight_buffers`` resolved against the probe, and why. Serving and the benchmarks use
    this one function, so they measure exactly what serve runs."""
    assert spec.path is not None, "the registry only loads present models"
    es, path = settings.engine, spec.path
    from_profile = False
    if profiles is not None:
        match = profiles.match(spec.sha256)
        es, path = tuned_settings(match, es, path, variant_path)
        from_profile = (es is not settings.engine and match.profile is not None
                        and "weight_buffers" in match.profile.engine)
    es, choice = resolve_engine_settings(es, probe.current(), from_profile=from_profile)
    return es, path, choice


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
    probe = build_probe(settings)
    default_model = None
    if ms.default == "auto":  # resolved once, here, from the cached probe answer (serve probes before this)
        default_model = recommend_model(probe.cached())
        ms.default = default_model.name
        log.info("default model %s: %s", default_model.name, default_model.reason)
    weight_choices: dict[str, WeightChoice] = {}
    registry: ModelRegistry | None = None

    def variant_path(name: str, sha256: str) -> Path:
        assert registry is not None
        return registry.verified_path(name, sha256)

    registry = ModelRegistry(
        cache_dir=settings.model_cache_dir,
        load_engine=audited_loads(load_engine or build_llama_engine_factory(settings, profiles, variant_path,
                                                                            probe, weight_choices), audit),
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
                    profiles=profiles, residency=residency, conversations=ConversationStore(db), probe=probe,
                    weight_choices=weight_choices, default_model=default_model)
