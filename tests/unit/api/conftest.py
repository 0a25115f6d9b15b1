"""Fixtures for in-process API tests: a real app over real engines on the FakeBackend.

The registry here is a small stand-in with the ``ModelRegistry`` surface the app uses; the e2e tests run
the real registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.chat.service import ChatService
from inhouse.config import Settings
from inhouse.engine.protocol import EngineClient
from inhouse.errors import ModelNotFound
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.models.spec import ModelSpec
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.testing.fakes import build_fake_engine

MODEL = "fake-model"


def fake_spec(name: str) -> ModelSpec:
    return ModelSpec(name=name, path=None, sha256=None, size_bytes=1234, quantization="Q8_0",
                     context_length=2048, architecture="fake", source="test", present=True)


class RegistryStandIn:
    def __init__(self, engines: dict[str, EngineClient], extra: list[ModelSpec] | None = None) -> None:
        self.engines = engines
        self.specs = {n: fake_spec(n) for n in engines}
        for s in extra or []:
            self.specs[s.name] = s

    def list_models(self) -> list[ModelSpec]:
        return list(self.specs.values())

    def resolve(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise ModelNotFound(name, list(self.specs))
        return self.specs[name]

    def get_engine(self, name: str) -> EngineClient:
        self.resolve(name)
        return self.engines[name]

    def loaded(self) -> list[str]:
        return list(self.engines)

    def loaded_engines(self) -> list[tuple[str, EngineClient]]:
        return list(self.engines.items())

    def close(self) -> None:
        for e in self.engines.values():
            e.close()  # type: ignore[attr-defined]


@dataclass
class ServicesStandIn:
    settings: Settings
    db: Database
    keys: KeyStore
    registry: Any
    chat: ChatService
    directory: UserDirectory
    quotas: QuotaService
    audit_sink: MemoryAuditSink
    admin_key: str = ""
    member_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.registry.close()
        self.db.close()


ServicesFactory = Callable[..., ServicesStandIn]


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[ServicesFactory]:
    made: list[ServicesStandIn] = []

    def make(server: dict[str, Any] | None = None, engine: dict[str, Any] | None = None,
             fake: dict[str, Any] | None = None, registry: Any = None,
             governance: dict[str, Any] | None = None) -> ServicesStandIn:
        settings = Settings(data_dir=tmp_path / f"data{len(made)}", server=server or {}, engine=engine or {},
                            models={"default": MODEL}, governance=governance or {})
        db = open_inhouse_db(settings.db_path)
        sink = MemoryAuditSink()
        governance = SqliteGovernanceStore(db)
        keys = KeyStore(governance, audit=sink)
        directory = UserDirectory(governance, audit=sink)
        gs = settings.governance
        quotas = QuotaService(governance, default_rpm=gs.default_rpm, default_tokens_per_day=gs.default_tokens_per_day)
        _, admin = keys.create_key("admin", role="admin")
        _, member = keys.create_key("member")
        if registry is None:
            registry = RegistryStandIn({MODEL: build_fake_engine(MODEL, **(engine or {}), **(fake or {}))})
        chat = ChatService(registry, settings.engine)
        s = ServicesStandIn(settings, db, keys, registry, chat, directory, quotas, sink, admin, member)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def services(make_services: ServicesFactory) -> ServicesStandIn:
    return make_services()


@pytest.fixture
def app(services: ServicesStandIn) -> FastAPI:
    return build_app(services)


@pytest.fixture
def client(app: FastAPI, services: ServicesStandIn) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {services.member_key}"}) as c:
        yield c

