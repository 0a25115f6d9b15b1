"""The composition root: every service is built here from the settings and handed down explicitly.

Nothing else in the package constructs a database, a registry or an engine on its own; the CLI and the
HTTP app receive a ``Services`` object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from inhouse.config import Settings
from inhouse.engine.protocol import EngineClient
from inhouse.governance.identity import KeyStore
from inhouse.models.chat import ChatService
from inhouse.models.registry import ModelRegistry
from inhouse.models.spec import ModelSpec
from inhouse.store.db import Database

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelSpec], EngineClient]


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyStore
    registry: ModelRegistry
    chat: ChatService

    def close(self) -> None:
        self.registry.close()
        self.db.close()


def build_llama_engine_factory(settings: Settings) -> EngineFactory:
    """Load a model into llama.cpp (lazily imported: `inhouse --help` must not pay for it)."""

    def load(spec: ModelSpec) -> EngineClient:
        from inhouse.engine.backends.llama_cpp import LlamaCppBackend
        from inhouse.engine.engine import Engine

        es = settings.engine
        assert spec.path is not None, "the registry only loads present models"
        n_ctx = es.n_ctx if not spec.context_length else min(es.n_ctx, spec.context_length)
        log.info("loading model %s from %s (n_ctx=%d)", spec.name, spec.path, n_ctx)
        backend = LlamaCppBackend(
            spec.path,
            n_ctx=n_ctx,
            n_slots=es.max_running + es.n_cache_slots,
            n_batch=es.step_token_budget,
            n_ubatch=min(es.n_ubatch, es.step_token_budget),
            n_threads=es.n_threads,
            n_threads_batch=es.n_threads_batch,
            flash_attn=es.flash_attn,
            kv_type=es.kv_type,
        )
        return Engine(spec.name, backend, es)

    return load


def build_services(settings: Settings, *, load_engine: EngineFactory | None = None) -> Services:
    """Open (and migrate) the database, the key store, the model registry and the chat service."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.model_cache_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_path)
    db.migrate()
    keys = KeyStore(db)
    registry = ModelRegistry(
        cache_dir=settings.model_cache_dir,
        load_engine=load_engine or build_llama_engine_factory(settings),
        ram_budget_mb=settings.models.ram_budget_mb,
    )
    chat = ChatService(registry, settings.engine)
    return Services(settings=settings, db=db, keys=keys, registry=registry, chat=chat)
