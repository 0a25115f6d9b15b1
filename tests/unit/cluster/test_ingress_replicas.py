"""``cluster.ingress_replicas``: one by default; more only over a shared store (PostgreSQL), refused on SQLite with
a message that says what to set. (The replicas themselves: tests/integration/test_cluster_ingress.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.cluster.app import check_ingress_replicas
from inhouse.errors import InvalidRequest
from inhouse.testing.services import fake_settings


def test_one_ingress_on_sqlite_is_fine(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path)
    assert settings.cluster.ingress_replicas == 1
    check_ingress_replicas(settings)


def test_several_ingress_replicas_need_a_shared_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"needs a shared store: set store\.url") as err:
        check_ingress_replicas(fake_settings(tmp_path, {"cluster": {"ingress_replicas": 2}}))
    assert err.value.param == "cluster.ingress_replicas"
    check_ingress_replicas(fake_settings(tmp_path, {"cluster": {"ingress_replicas": 2},
                                                    "store": {"url": "postgresql://db.internal/inhouse"}}))
