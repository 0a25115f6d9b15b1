"""Fixtures for in-process API tests: the real app over the real wiring (``make_services`` in tests/unit/conftest.py:
``bootstrap.build_services`` with FakeBackend engines and the FakeEmbedder)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inhouse.api.app import build_app

MODEL = "fake-model"


@pytest.fixture
def services(make_services: Any) -> Any:
    return make_services()


@pytest.fixture
def app(services: Any) -> FastAPI:
    return build_app(services)


@pytest.fixture
def client(app: FastAPI, services: Any) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {services.member_key}"}) as c:
        yield c


@pytest.fixture
def admin(app: FastAPI, services: Any) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {services.admin_key}"}) as c:
        yield c
