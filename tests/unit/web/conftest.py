"""The production wiring (``bootstrap.build_services``) over a fake engine and the FakeEmbedder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.testing.fakes import build_fake_engine


@dataclass
class WebServices:
    services: Any
    admin_key: str
    member_key: str

    def __getattr__(self, name: str) -> Any:  # build_app reads the Services attributes through this
        return getattr(self.services, name)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[WebServices]:
    settings = Settings(data_dir=tmp_path / "data", models={"default": "fake-model"}, kb={"embedder": "fake"})
    s = build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name))
    _, admin = s.keys.create_key("admin", role="admin")
    _, member = s.keys.create_key("member")
    yield WebServices(s, admin, member)
    s.close()
