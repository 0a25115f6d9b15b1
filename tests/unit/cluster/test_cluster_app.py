"""What ``build_application`` binds (nothing is deployed: Serve's ``bind`` needs no cluster): the Embedder
deployment and its autoscaling, or embedding left in the ingress; the metrics board only with several ingress
replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inhouse.cluster.app import (
    BOARD_DEPLOYMENT,
    EMBEDDER_DEPLOYMENT,
    NODE_RESOURCE,
    ModelDeployment,
    build_application,
)
from inhouse.testing.services import fake_settings

PG = {"url": "postgresql://db.internal/inhouse"}


def _ingress_kwargs(tmp_path: Path, overrides: dict[str, Any], n_nodes: int = 3) -> dict[str, Any]:
    app = build_application(fake_settings(tmp_path, overrides), [ModelDeployment("m", engine="fake")],
                            n_nodes=n_nodes)
    kwargs: dict[str, Any] = app._bound_deployment.init_kwargs
    return kwargs


def test_the_embedder_is_placed_and_scaled_like_a_model(tmp_path: Path) -> None:
    kwargs = _ingress_kwargs(tmp_path, {"cluster": {"upscale_delay_s": 2.0, "downscale_delay_s": 30.0}})
    embedder = kwargs["embedder"]._bound_deployment
    assert embedder.name == EMBEDDER_DEPLOYMENT
    assert embedder.init_args == ({"embedder": "fake", "embed_engine": "auto", "embed_batch": 64},)
    assert embedder.ray_actor_options["num_cpus"] == 0 and NODE_RESOURCE in embedder.ray_actor_options["resources"]
    assert embedder._replica_config.max_replicas_per_node == 1
    scaling = embedder._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.initial_replicas, scaling.max_replicas) == (1, 1, 3)  # up to 1 per machine
    assert (scaling.upscale_delay_s, scaling.downscale_delay_s, scaling.downscale_to_zero_delay_s) == (2.0, 30.0, 30.0)
    assert kwargs["metrics_board"] is None  # one ingress: it counts its own requests


def test_embedding_can_stay_in_the_ingress_and_the_embedder_can_scale_to_zero(tmp_path: Path) -> None:
    assert _ingress_kwargs(tmp_path, {"cluster": {"embedder": "ingress"}})["embedder"] is None
    zero = _ingress_kwargs(tmp_path, {"cluster": {"embedder_min_replicas": 0}})["embedder"]._bound_deployment
    scaling = zero._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.initial_replicas) == (0, 1)


def test_several_ingress_replicas_get_the_metrics_board(tmp_path: Path) -> None:
    kwargs = _ingress_kwargs(tmp_path, {"cluster": {"ingress_replicas": 2}, "store": PG})
    board = kwargs["metrics_board"]._bound_deployment
    assert board.name == BOARD_DEPLOYMENT and board.num_replicas == 1
