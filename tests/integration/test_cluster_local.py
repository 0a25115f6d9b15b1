"""``LocalCluster`` keeps Ray's files (session logs, sockets) in a temporary directory of its own and removes it when
it stops: the test clusters of a CI run must not leave one behind each (they filled the shared disk once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.cluster.local import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(180)]


def test_the_ray_temp_dir_is_removed_when_the_cluster_stops(tmp_path: Path) -> None:
    import ray

    local = LocalCluster([tmp_path]).start()
    try:
        temp = local.temp_dir
        assert temp is not None and temp.name.startswith("inhouse-ray-")
        session = Path(ray._private.worker._global_node.get_session_dir_path())
        assert session.is_dir() and session.is_relative_to(temp), session  # not Ray's shared default
        assert any((session / "logs").iterdir())
    finally:
        local.stop()
    assert not temp.exists(), f"{temp} left after the cluster stopped"
