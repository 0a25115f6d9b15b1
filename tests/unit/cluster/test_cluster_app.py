"""What ``build_application`` binds (nothing is deployed: Serve's ``bind`` needs no cluster): the Embedder
deployment and its autoscaling, or embedding left in the ingress; the metrics board only with several ingress
replicas; replica bounds that do not depend on the machines up at deploy time; versions that change only with what
a deployment's replicas are built from; when ``deploy`` counts the app as serving; engine overrides checked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inhouse.cluster.app import (
    BOARD_DEPLOYMENT,
    EMBEDDER_DEPLOYMENT,
    INGRESS_DEPLOYMENT,
    MAX_MACHINES,
    NODE_RESOURCE,
    ModelDeployment,
    build_application,
    serving,
)
from inhouse.cluster.status import ModelView
from inhouse.errors import Unavailable
from inhouse.testing.services import fake_settings

PG = {"url": "postgresql://db.internal/inhouse"}


def _ingress_kwargs(tmp_path: Path, overrides: dict[str, Any], machines: int = 3) -> dict[str, Any]:
    app = build_application(fake_settings(tmp_path, overrides), [ModelDeployment("m", engine="fake")],
                            machines=machines)
    kwargs: dict[str, Any] = app._bound_deployment.init_kwargs
    return kwargs


def test_the_embedder_is_placed_and_scaled_like_a_model(tmp_path: Path) -> None:
    kwargs = _ingress_kwargs(tmp_path, {"cluster": {"upscale_delay_s": 2.0, "downscale_delay_s": 30.0}})
    embedder = kwargs["embedder"]._bound_deployment
    assert embedder.name == EMBEDDER_DEPLOYMENT
    assert embedder.init_args == ({"embedder": "fake", "embed_engine": "auto", "embed_batch": 256},)
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


def _versions(tmp_path: Path, overrides: dict[str, Any], model: ModelDeployment) -> dict[str, str]:
    app = build_application(fake_settings(tmp_path, overrides), [model])
    bound = app._bound_deployment
    out = {INGRESS_DEPLOYMENT: bound.version}
    out.update({name: handle._bound_deployment.version for name, handle in bound.init_args[1].items()})
    out[EMBEDDER_DEPLOYMENT] = bound.init_kwargs["embedder"]._bound_deployment.version
    return out


def test_replica_bounds_do_not_depend_on_the_machines_up_at_deploy_time(tmp_path: Path) -> None:
    """After a reboot the head deploys before the workers rejoin: a model wanting 2 replicas keeps wanting 2, and
    "one per machine" stays open to the machines that join (``max_replicas_per_node=1`` places them)."""
    app = build_application(fake_settings(tmp_path, {"cluster": {"min_replicas": 2, "initial_replicas": 2}}),
                            [ModelDeployment("m", engine="fake")])
    model = app._bound_deployment.init_args[1]["m"]._bound_deployment
    scaling = model._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.initial_replicas, scaling.max_replicas) == (2, 2, MAX_MACHINES)
    assert model._replica_config.max_replicas_per_node == 1
    embedder = app._bound_deployment.init_kwargs["embedder"]._bound_deployment._deployment_config
    assert embedder.autoscaling_config.max_replicas == MAX_MACHINES


def test_versions_change_only_with_what_the_replicas_are_built_from(tmp_path: Path) -> None:
    model = ModelDeployment("m", engine="fake")
    first = _versions(tmp_path, {}, model)
    assert _versions(tmp_path, {}, model) == first  # the same deploy again: Serve restarts nothing
    slower = _versions(tmp_path, {"cluster": {"call_timeout_s": 10.0}}, model)  # a setting of the ingress
    assert slower[INGRESS_DEPLOYMENT] != first[INGRESS_DEPLOYMENT]
    assert {k: v for k, v in slower.items() if k != INGRESS_DEPLOYMENT} == \
        {k: v for k, v in first.items() if k != INGRESS_DEPLOYMENT}
    other = _versions(tmp_path, {}, ModelDeployment("m", engine="fake", engine_overrides={"max_running": 2}))
    assert other["m"] != first["m"] and other[EMBEDDER_DEPLOYMENT] == first[EMBEDDER_DEPLOYMENT]


def _app(status: str, **deployments: tuple[str, dict[str, int]]) -> Any:
    return SimpleNamespace(status=status, message="boom", deployments={
        name: SimpleNamespace(status=s, replica_states=states) for name, (s, states) in deployments.items()})


def test_deploy_returns_once_each_machine_up_runs_its_replicas() -> None:
    ingress = (INGRESS_DEPLOYMENT, ("HEALTHY", {"RUNNING": 1}))
    assert serving(_app("RUNNING"), 1)
    # A second replica waits for a machine to join: the app serves.
    assert serving(_app("DEPLOYING", **dict([ingress]), m=("UPDATING", {"RUNNING": 1, "STARTING": 1})), 1)
    # A machine up has no replica running yet, or the ingress is not up yet: not yet.
    assert not serving(_app("DEPLOYING", **dict([ingress]), m=("UPDATING", {"RUNNING": 1, "STARTING": 1})), 2)
    assert not serving(_app("DEPLOYING", ingress=("UPDATING", {"STARTING": 1}), m=("HEALTHY", {"RUNNING": 1})), 1)
    # Serve has not taken up the new target yet (every deployment still healthy while DEPLOYING).
    assert not serving(_app("DEPLOYING", **dict([ingress]), m=("HEALTHY", {"RUNNING": 1})), 1)
    with pytest.raises(Unavailable, match="boom"):
        serving(_app("DEPLOY_FAILED"), 1)


def test_status_counts_the_replicas_waiting_for_a_machine() -> None:
    view = ModelView("m", "model-m", "UPDATING", {"RUNNING": 1, "STARTING": 2})
    assert view.waiting_for_machines(1) == 2 and view.waiting_for_machines(3) == 0


def test_a_misspelt_engine_override_is_refused_where_the_deployment_is_named() -> None:
    from pydantic import ValidationError

    assert ModelDeployment("m", engine_overrides={"max_running": 2}).engine_overrides == {"max_running": 2}
    with pytest.raises(ValidationError, match="max_runing"):  # dropped in every replica before 2026-12-07
        ModelDeployment("m", engine_overrides={"max_runing": 2})
