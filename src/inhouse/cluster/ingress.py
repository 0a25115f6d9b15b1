"""``Ingress``: today's whole HTTP app (auth, quotas, ACL, retrieval, templates, SSE, the web UI) as a Ray Serve
replica, its models reached through ``RemoteEngine`` handles instead of llama.cpp.

It is ``bootstrap.build_services`` with one seam changed (the engine factory) and ``api.app.build_app`` on top,
served by Serve's HTTP proxy. Its stores are those of its settings: the SQLite files of its data directory, or
PostgreSQL with ``store.url``. There are ``cluster.ingress_replicas`` of them on the head machine (resource
``inhouse_ingress``); more than one only with PostgreSQL, where they share every store, the requests/minute windows
and the audit chain (docs/scale-out.md). Each replica writes the chain under its own node name,
``<store.node or host>/ingress-<replica>``, and when it starts closes the requests a replica that died left open.

Two more seams in cluster mode, both wired here: with an ``embedder`` handle (``cluster.embedder = "deployment"``)
the knowledge base embeds through ``RemoteEmbedder`` (the Embedder deployment) instead of loading e5 in this process;
with a ``metrics_board`` handle (several ingress replicas) /metrics sums the HTTP series of all of them
(``BoardExchange``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from inhouse.cluster.remote import remote_engine_factory
from inhouse.config import Settings

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from inhouse.services import Services

log = logging.getLogger(__name__)


class Ingress:
    """A Serve deployment class (wrapped with ``serve.ingress()`` by ``cluster/app.py``)."""

    def __init__(self, settings: dict[str, Any], handles: dict[str, DeploymentHandle], app_name: str, *,
                 embedder: DeploymentHandle | None = None, metrics_board: DeploymentHandle | None = None) -> None:
        from ray import serve

        from inhouse.bootstrap import build_embedder_tokens, build_services
        from inhouse.cluster.metrics_board import BoardExchange
        from inhouse.cluster.remote_embedder import RemoteEmbedder
        from inhouse.store.build import node_name

        self._settings = Settings(**settings)
        timeout_s = self._settings.cluster.call_timeout_s
        replica = serve.get_replica_context().replica_id.unique_id
        self._settings.store.node = f"{node_name(self._settings)}/ingress-{replica}"
        # The local embedder answers only the tokenizer's part; its model is never loaded here.
        remote = (RemoteEmbedder(embedder, local=build_embedder_tokens(self._settings), call_timeout_s=timeout_s)
                  if embedder is not None else None)
        self.services: Services = build_services(
            self._settings, load_engine=remote_engine_factory(handles, app_name=app_name, call_timeout_s=timeout_s),
            embedder=remote)
        self._exchange = BoardExchange(metrics_board, replica) if metrics_board is not None else None
        self._close_interrupted()
        log.info("ingress %s up: models %s, embedding %s, data in %s", replica, ", ".join(sorted(handles)),
                 "in the Embedder deployment" if remote else "here", self._settings.data_dir)

    def _close_interrupted(self) -> None:
        """A replica that died (Ray starts another, under another node name) left its running requests open, and
        what it kept through a store outage in its own spool files: take those over, then close the requests whose
        process is gone, as ``inhouse serve`` does at its start (only requests that name their process: the other
        replicas' are served)."""
        from inhouse.errors import InhouseError

        try:
            taken = self.services.take_over_previous_runs(per_process=True)
        except InhouseError as exc:  # the store is away: the next replica to start takes over and closes them
            log.warning("what ingress replicas that are gone left could not be taken over now: %s", exc.message)
            return
        if taken.charges or taken.records:
            log.warning("%d token charge(s) and %d audit record(s) kept by ingress replicas that are gone are taken "
                        "over", taken.charges, taken.records)
        if taken.interrupted:
            log.warning("%d request(s) of ingress replicas that are gone recorded as interrupted",
                        len(taken.interrupted))

    def __serve_build_asgi_app__(self) -> Any:
        from inhouse.api.app import build_app

        return build_app(self.services, series_exchange=self._exchange)

    def __del__(self) -> None:
        exchange = getattr(self, "_exchange", None)
        if exchange is not None:
            exchange.close()
        services = getattr(self, "services", None)
        if services is not None:
            services.close()
