"""``Ingress``: today's whole HTTP app (auth, quotas, ACL, retrieval, templates, SSE, the web UI) as a Ray Serve
replica, its models reached through ``RemoteEngine`` handles instead of llama.cpp.

It is ``bootstrap.build_services`` with one seam changed (the engine factory) and ``api.app.build_app`` on top,
served by Serve's HTTP proxy. Its stores are those of its settings: the SQLite files of its data directory, or
PostgreSQL with ``store.url``. There are ``cluster.ingress_replicas`` of them on the head machine (resource
``inhouse_ingress``); more than one only with PostgreSQL, where they share every store, the requests/minute windows
and the audit chain (docs/scale-out.md). Each replica writes the chain under its own node name,
``<store.node or host>/ingress-<replica>``.
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

    def __init__(self, settings: dict[str, Any], handles: dict[str, DeploymentHandle], app_name: str) -> None:
        from ray import serve

        from inhouse.bootstrap import build_services
        from inhouse.store.build import node_name

        self._settings = Settings(**settings)
        replica = serve.get_replica_context().replica_id.unique_id
        self._settings.store.node = f"{node_name(self._settings)}/ingress-{replica}"
        self.services: Services = build_services(
            self._settings,
            load_engine=remote_engine_factory(handles, app_name=app_name,
                                              call_timeout_s=self._settings.cluster.call_timeout_s))
        log.info("ingress %s up: models %s, data in %s", replica, ", ".join(sorted(handles)), self._settings.data_dir)

    def __serve_build_asgi_app__(self) -> Any:
        from inhouse.api.app import build_app

        return build_app(self.services)

    def __del__(self) -> None:
        services = getattr(self, "services", None)
        if services is not None:
            services.close()
