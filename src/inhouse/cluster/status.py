"""What ``inhouse cluster status`` shows: the machines, each model's replicas (where, how busy, prefix-cache hits,
which tuned profile) and its queue depth. Read from a connected driver; nothing here changes the cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inhouse.cluster.app import APP_NAME, EMBEDDER_DEPLOYMENT, INGRESS_RESOURCE, NODE_RESOURCE


@dataclass(frozen=True)
class NodeView:
    node_id: str
    address: str
    alive: bool
    head: bool  # offers the ingress
    cpus: float


@dataclass(frozen=True)
class ModelView:
    model: str
    deployment: str
    status: str  # Serve's deployment status (HEALTHY, UPSCALING, …)
    replicas: dict[str, int]  # replica state → count
    per_replica: list[dict[str, Any]] = field(default_factory=list)  # ModelServer.stats of each live replica

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the replicas' engines (admitted, not yet decoding)."""
        return sum(int(r.get("waiting", 0)) for r in self.per_replica)

    @property
    def running(self) -> int:
        return sum(int(r.get("running", 0)) for r in self.per_replica)

    def waiting_for_machines(self, machines: int) -> int:
        """Replicas wanted beyond one per machine up (``machines``): Serve keeps them STARTING until machines join."""
        wanted = sum(n for state, n in self.replicas.items() if state in ("RUNNING", "STARTING"))
        return max(0, wanted - machines)


@dataclass(frozen=True)
class ClusterView:
    nodes: list[NodeView]
    app_status: str
    models: list[ModelView]
    # The Embedder deployment (cluster.embedder = "deployment"): per replica its calls, passages and queries.
    embedder: ModelView | None = None

    @property
    def machines(self) -> int:
        """Machines up that take replicas (one per model each)."""
        return sum(1 for n in self.nodes if n.alive)


def hit_rate(stats: dict[str, Any]) -> float:
    queries = int(stats.get("prefix_cache_queries", 0))
    return int(stats.get("prefix_cache_hits", 0)) / queries if queries else 0.0


def read_status(*, timeout_s: float = 10.0) -> ClusterView:
    import ray
    from ray import serve

    from inhouse.cluster.remote import replica_stats

    nodes = [NodeView(n["NodeID"], n.get("NodeManagerAddress", ""), bool(n.get("Alive")),
                      bool(n.get("Resources", {}).get(INGRESS_RESOURCE)), float(n.get("Resources", {}).get("CPU", 0)))
             for n in ray.nodes() if n.get("Resources", {}).get(NODE_RESOURCE) or not n.get("Alive")]
    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return ClusterView(nodes, "NOT_DEPLOYED", [])
    views: dict[str, ModelView] = {}
    for name, dep in sorted(app.deployments.items()):
        if not name.startswith("model-") and name != EMBEDDER_DEPLOYMENT:
            continue
        handle = serve.get_deployment_handle(name, APP_NAME)
        per = replica_stats(handle, APP_NAME, name, timeout_s=timeout_s)
        states = {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}
        views[name] = ModelView(name.removeprefix("model-"), name, str(getattr(dep.status, "value", dep.status)),
                                states, sorted(per, key=lambda s: str(s.get("node_id"))))
    embedder = views.pop(EMBEDDER_DEPLOYMENT, None)
    return ClusterView(nodes, str(getattr(app.status, "value", app.status)), list(views.values()), embedder)
