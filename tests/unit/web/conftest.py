"""The production wiring (``bootstrap.build_services``) over a fake engine and the FakeEmbedder: ``make_services``
in tests/unit/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def services(make_services: Any) -> Any:
    return make_services()
