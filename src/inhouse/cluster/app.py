"""The cluster application: one ``ModelServer`` deployment per model and the ``Ingress``, deployed with Serve.

Placement: every machine started by ``inhouse cluster up``/``join`` offers the custom resource ``inhouse_node``;
model replicas ask for a sliver of it and ``max_replicas_per_node=1``, so each model has at most one replica per
machine, and its engine's threads are its own business (``num_cpus=0``: Ray does not count cores for it). The head
also offers ``inhouse_ingress``, where the ingress replicas run (``cluster.ingress_replicas``, each its own process; its
data directory with ``audit.key`` and the model files is there: docs/scale-out.md). Several need PostgreSQL
(``store.url``): each would otherwise write its own SQLite files and keep its own requests/minute windows.

The ``Embedder`` (``cluster.embedder = "deployment"``, ``cluster/embed_server.py``) is placed like a model (at most
one replica per machine) and autoscaled with the same delays from ``cluster.embedder_min_replicas``; the ingress
replicas embed through it. With several ingress replicas a ``MetricsBoard`` replica on the head sums their HTTP
metrics (``cluster/metrics_board.py``).

Autoscaling: each model from ``cluster.min_replicas`` (0: its machines go back to other work) up to one per
machine, with the delays of ``cluster.upscale_delay_s`` / ``downscale_delay_s`` instead of Ray's 30 s / 600 s.
``max_ongoing_requests`` of a replica is its engine's ``max_running``: a replica at that many requests is full and
the router spills to the next choice (``cluster/router.py``). The bounds do not depend on the machines up when the
app is deployed (after a reboot the head deploys before the workers rejoin): ``max_replicas_per_node=1`` is what
keeps one replica per machine, and a replica wanted beyond the machines up waits, STARTING, until one joins.

Versions: each deployment's ``version`` is a digest of what its replicas are built from (this package's code and
their constructor arguments), so running ``serve --cluster`` again with the same settings restarts nothing (Ray
restarts a replica when its version changes, and without a version every deploy is a new one).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.cluster.embed_server import KB_FIELDS, EmbedderServer
from inhouse.cluster.ingress import Ingress
from inhouse.cluster.metrics_board import MetricsBoard
from inhouse.cluster.model_server import ModelServer
from inhouse.config import Settings
from inhouse.errors import InvalidRequest, Unavailable
from inhouse.store.build import uses_postgres

if TYPE_CHECKING:
    from ray.serve import Application

APP_NAME = "inhouse"
NODE_RESOURCE = "inhouse_node"
INGRESS_RESOURCE = "inhouse_ingress"
INGRESS_DEPLOYMENT = "ingress"
EMBEDDER_DEPLOYMENT = "embedder"
BOARD_DEPLOYMENT = "metrics-board"
# Calls an Embedder replica takes at once (it embeds one at a time; a few queued keep it busy between calls), and
# the load per replica autoscaling aims for: more than one call in flight on average adds a machine's replica.
EMBEDDER_MAX_ONGOING = 4
EMBEDDER_TARGET_ONGOING = 1.0
# Autoscaling looks at the last few seconds of load, reported every second (Ray's defaults: 30 s and 10 s).
METRICS_INTERVAL_S = 1.0
LOOK_BACK_PERIOD_S = 5.0
# "One replica per machine" (cluster.max_replicas = 0) as Serve's max_replicas: a bound on machines, not the machines
# up at deploy time (max_replicas_per_node=1 places one per machine; more wait until machines join).
MAX_MACHINES = 64
# Deployments placed only on the head (inhouse_ingress), not one per machine.
HEAD_DEPLOYMENTS = frozenset({INGRESS_DEPLOYMENT, BOARD_DEPLOYMENT})
DEPLOY_POLL_S = 0.5
# Serve's grace for a stopping ingress replica before it is killed; the ingress fails what still runs a little
# before (``Ingress``, cluster/ingress.py), so each running request ends with its final event and audit record.
INGRESS_GRACE_S = 5.0


@dataclass(frozen=True)
class ModelDeployment:
    """One model to deploy. ``engine="fake"`` runs the scripted fake engine (tests, demos)."""

    model: str
    engine: str = "llama"
    engine_overrides: dict[str, Any] = field(default_factory=dict)
    fake_delay_s: float = 0.0
    fake_reply: str | None = None
    autoscaling: dict[str, Any] = field(default_factory=dict)  # over ``autoscaling_config`` (e.g. min_replicas)
    routing: str | None = None  # over ``cluster.routing`` (the benchmark compares both on one cluster)

    def __post_init__(self) -> None:
        # Checked here, where the caller is: a misspelt engine setting would otherwise be dropped in each replica.
        from inhouse.config import EngineSettings

        EngineSettings.model_validate(self.engine_overrides)


def deployment_name(model: str) -> str:
    return f"model-{model}"


def autoscaling_config(settings: Settings, capacity: int, machines: int = MAX_MACHINES) -> dict[str, Any]:
    """``machines``: the most machines "one replica per machine" (``cluster.max_replicas`` = 0) stands for."""
    cs = settings.cluster
    most = max(1, cs.max_replicas or machines)
    least = min(cs.min_replicas, most)
    return {
        "min_replicas": least,
        "max_replicas": most,
        "initial_replicas": max(least, min(cs.initial_replicas, most)),
        "target_ongoing_requests": cs.target_ongoing_requests or max(1.0, capacity / 2),
        "upscale_delay_s": cs.upscale_delay_s,
        "downscale_delay_s": cs.downscale_delay_s,
        "downscale_to_zero_delay_s": cs.downscale_delay_s,
        "metrics_interval_s": METRICS_INTERVAL_S,
        "look_back_period_s": LOOK_BACK_PERIOD_S,
    }


def embedder_autoscaling(settings: Settings, machines: int = MAX_MACHINES) -> dict[str, Any]:
    """The models' delays and look-back; from ``cluster.embedder_min_replicas`` up to one replica per machine."""
    least = min(settings.cluster.embedder_min_replicas, machines)
    return {**autoscaling_config(settings, EMBEDDER_MAX_ONGOING, machines), "min_replicas": least,
            "max_replicas": machines, "initial_replicas": max(least, 1),
            "target_ongoing_requests": EMBEDDER_TARGET_ONGOING}


@functools.cache
def code_digest() -> str:
    """A digest of this package's source: a deployment of changed code is a new version (its replicas restart)."""
    import inhouse

    root = Path(inhouse.__file__).parent
    h = hashlib.blake2b(inhouse.__version__.encode(), digest_size=8)
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def deployment_version(*parts: Any) -> str:
    """The ``version`` of a deployment built from ``parts`` (its constructor's arguments, JSON-able): Serve keeps
    replicas whose version is unchanged across deploys and compares nothing else of their arguments."""
    blob = json.dumps([code_digest(), *parts], sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def versioned(deployment: Any, version: str) -> Any:
    """``deployment`` with its ``version`` set. Ray 2.60 took ``version`` out of ``serve.deployment`` and
    ``Deployment.options`` (a random one per ``serve.run`` then restarts every replica) but still honours it through
    ``options(_internal=True)``; ``tests/integration/test_cluster_redeploy.py`` checks that it holds."""
    return deployment.options(version=version, _internal=True)


def check_ingress_replicas(settings: Settings) -> None:
    """Several ingress replicas share their stores, or they are refused."""
    n = settings.cluster.ingress_replicas
    if n > 1 and not uses_postgres(settings):
        raise InvalidRequest(
            f"cluster.ingress_replicas = {n} needs a shared store: set store.url to a PostgreSQL URL "
            "(docs/storage.md). On the embedded SQLite files each ingress would keep its own calendars, support "
            "sessions and requests/minute windows, and write its own audit chain.", param="cluster.ingress_replicas")


def build_application(settings: Settings, models: Sequence[ModelDeployment], *,
                      machines: int = MAX_MACHINES) -> Application:
    """The Serve application (not yet running): the ingress bound to a handle per model. ``machines``: the most
    replicas "one per machine" allows (``autoscaling_config``)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from inhouse.cluster.router import AffinityRouter

    if not models:
        raise InvalidRequest("A cluster app needs at least one model.")
    check_ingress_replicas(settings)

    def per_machine(name: str, cls: type, *, capacity: int, autoscaling: dict[str, Any], policy: str,
                    version: str) -> Any:
        # At most one replica per machine (a sliver of inhouse_node); its threads are its own (num_cpus=0). The
        # router also sends a call carrying replica_id= (stats of one replica) to that replica (cluster/router.py).
        return versioned(serve.deployment(
            name=name,
            max_ongoing_requests=capacity,
            max_replicas_per_node=1,
            autoscaling_config=autoscaling,
            ray_actor_options={"num_cpus": 0, "resources": {NODE_RESOURCE: 0.001}},
            request_router_config=RequestRouterConfig(
                request_router_class=AffinityRouter,  # type: ignore[arg-type]  # a class or its import path
                request_router_kwargs={"policy": policy}),
            health_check_period_s=2.0,
            health_check_timeout_s=30.0,
            graceful_shutdown_timeout_s=5.0,
        )(cls), version)

    handles: dict[str, Any] = {}
    for m in models:
        capacity = int(m.engine_overrides.get("max_running", settings.engine.max_running))
        deployment = per_machine(deployment_name(m.model), ModelServer, capacity=capacity,
                                 autoscaling={**autoscaling_config(settings, capacity, machines), **m.autoscaling},
                                 policy=m.routing or settings.cluster.routing,
                                 version=deployment_version(m.model, m.engine, m.engine_overrides, m.fake_delay_s,
                                                            m.fake_reply))
        handles[m.model] = deployment.bind(m.model, engine=m.engine, engine_overrides=dict(m.engine_overrides),
                                           fake_delay_s=m.fake_delay_s, fake_reply=m.fake_reply)
    embedder = None
    if settings.cluster.embedder == "deployment":
        kb = {k: getattr(settings.kb, k) for k in KB_FIELDS}
        embedder = per_machine(EMBEDDER_DEPLOYMENT, EmbedderServer, capacity=EMBEDDER_MAX_ONGOING,
                               autoscaling=embedder_autoscaling(settings, machines), policy="affinity",
                               version=deployment_version(kb)).bind(kb)
    board = None
    if settings.cluster.ingress_replicas > 1:  # one ingress counts its own requests: nothing to sum
        board = versioned(serve.deployment(
            name=BOARD_DEPLOYMENT, num_replicas=1, max_ongoing_requests=1000,
            ray_actor_options={"num_cpus": 0, "resources": {INGRESS_RESOURCE: 0.001}},
            graceful_shutdown_timeout_s=2.0,
        )(MetricsBoard), deployment_version()).bind()
    config = settings.model_dump(mode="json")
    ingress = versioned(serve.deployment(
        name=INGRESS_DEPLOYMENT,
        num_replicas=settings.cluster.ingress_replicas,
        max_ongoing_requests=max(100, settings.server.max_connections),
        ray_actor_options={"num_cpus": 0, "resources": {INGRESS_RESOURCE: 0.001}},
        graceful_shutdown_timeout_s=INGRESS_GRACE_S,
    )(serve.ingress()(Ingress)),
        # Its handles by name: a model's own changes restart that model's replicas, not the ingress.
        deployment_version(config, sorted(handles), embedder is not None, board is not None))
    return ingress.bind(config, handles, APP_NAME, embedder=embedder, metrics_board=board)


def count_nodes() -> int:
    """Alive machines that offer model replicas (``inhouse_node``)."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(NODE_RESOURCE))


def deploy(settings: Settings, models: Sequence[ModelDeployment]) -> tuple[str, int]:
    """Start Serve's HTTP proxy on the head (``server.host``:``server.port``) and deploy the app; returns once the
    ingress is up and each deployment runs the initial replicas the machines up now can hold (one per machine: a
    replica wanted beyond them stays STARTING until a machine joins, and ``cluster status`` says so). Needs a
    connected driver (``cluster/nodes.connect``). Deploying the same settings again restarts nothing. Returns the
    address the proxy serves: Serve keeps the one it started with, whatever a later deploy asks for."""
    from ray import serve
    from ray.serve.api import RunTarget
    from ray.serve.context import _get_global_client

    check_ingress_replicas(settings)  # before anything is started
    n_nodes = count_nodes()
    if n_nodes == 0:
        raise Unavailable(f"No machine in this cluster offers the '{NODE_RESOURCE}' resource: start them with "
                          "`inhouse cluster up` / `join`.")
    serve.start(http_options={"host": settings.server.host, "port": settings.server.port, "location": "HeadOnly"})
    # Not serve.run: it waits until every replica runs, forever when more are wanted than machines are up.
    serve.run_many([RunTarget(build_application(settings, models), name=APP_NAME, route_prefix="/")],
                   wait_for_applications_running=False)
    wait_until_serving(n_nodes)
    client = _get_global_client()  # private accessor, as the ingress's stop watcher uses
    if client is None:  # serve.start above made one; only a driver that lost Serve meanwhile has none
        raise Unavailable("Serve stopped on the cluster while the app was deployed; run the command again.")
    return str(client.http_config.host), int(client.http_config.port)


def serving(app: Any, n_nodes: int) -> bool:
    """Whether ``app`` (Serve's ``ApplicationStatusOverview``) serves with what ``n_nodes`` machines can hold: every
    deployment healthy, except that a per-machine one may still wait for machines to join, once each machine up runs
    its replica (the rest STARTING). ``Unavailable`` once the deploy failed."""
    status = str(getattr(app.status, "value", app.status))
    if status in ("DEPLOY_FAILED", "UNHEALTHY"):
        raise Unavailable(f"The cluster app did not deploy ({status}): {app.message or 'see the Serve logs'}")
    if status == "RUNNING":
        return True
    if status != "DEPLOYING":
        return False
    waiting = 0
    for name, dep in app.deployments.items():
        if str(getattr(dep.status, "value", dep.status)) == "HEALTHY":
            continue
        states = {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}
        running, starting = states.get("RUNNING", 0), states.get("STARTING", 0)
        if name in HEAD_DEPLOYMENTS or running < n_nodes or starting == 0 or running + starting != sum(states.values()):
            return False
        waiting += 1
    # All healthy while still DEPLOYING: Serve has not yet taken up the new target (its control loop runs later).
    return waiting > 0


def wait_until_serving(n_nodes: int) -> None:
    from ray import serve

    while True:
        app = serve.status().applications.get(APP_NAME)
        if app is not None and serving(app, n_nodes):
            return
        time.sleep(DEPLOY_POLL_S)


def app_builder(args: dict[str, Any]) -> Application:
    """For Serve config files (``import_path: inhouse.cluster.app:app_builder``, KubeRay's RayService): the settings
    come from the head's ``INHOUSE_*`` environment and ``INHOUSE_CONFIG``; ``args.models`` lists the models
    (default: ``models.default`` and ``models.preload``); ``args.machines`` caps replicas per model (default: one per
    machine, whenever the machines join)."""
    settings = Settings()
    names = args.get("models") or [settings.models.default, *settings.models.preload]
    machines = int(args.get("machines") or MAX_MACHINES)
    return build_application(settings, [ModelDeployment(str(n)) for n in dict.fromkeys(names)], machines=machines)
