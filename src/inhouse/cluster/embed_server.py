"""``EmbedderServer``: the knowledge base's embedder (multilingual-e5-small) on one machine, as a Ray Serve replica.

With ``cluster.embedder = "deployment"`` (the default) the ingress replicas do not load e5 themselves: they embed
through ``RemoteEmbedder`` (``cluster/remote_embedder.py``), which calls this deployment: ``embed_passages`` for
ingestion, ``embed_query`` for every search. The replica builds the embedder as ``inhouse serve`` does
(``bootstrap.build_embedder_for``), from its machine's settings (data directory and model cache, where the e5 GGUF
is converted once; ``kb.embed_threads``) with the ingress's choice of embedder (``kb.embedder``, ``kb.embed_engine``,
``kb.embed_batch``), because the vectors must be those the index was built with. It loads the model in its
constructor: a replica is ready once its model is.

Placement and scaling (``cluster/app.py``): like a model, at most one replica per machine (``inhouse_node``,
``max_replicas_per_node=1``, ``num_cpus=0``: the embedder sizes its own threads), autoscaled with the models' short
delays from ``cluster.embedder_min_replicas`` up to one per machine.

An ``inhouse.errors`` error raised while embedding comes back as an ``ErrorRecord`` (``cluster/wire.py``), so it
keeps its kind at the ingress. The replica counts what it served (``stats``: calls, passages, queries), which
``inhouse cluster status`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from inhouse.cluster.model_server import uncap_threads
from inhouse.cluster.wire import ErrorRecord, error_record
from inhouse.config import Settings
from inhouse.errors import InhouseError

if TYPE_CHECKING:
    import numpy as np

    from inhouse.kb.embed import Embedder

log = logging.getLogger(__name__)
T = TypeVar("T")
# The ingress's choice of embedder, applied over each machine's settings (the vectors must match the index's).
KB_FIELDS = ("embedder", "embed_engine", "embed_batch")


@dataclass(frozen=True)
class EmbedderInfo:
    """Who an Embedder replica is and what it runs (``EmbedderServer.describe``)."""

    name: str  # the embedding model (the index's vectors must come from this one)
    dim: int
    replica: str  # Serve's unique replica id
    node_id: str
    pid: int


class EmbedderServer:
    """A Serve deployment class (wrapped by ``cluster/app.py``). ``kb``: the ingress's ``KB_FIELDS``."""

    def __init__(self, kb: dict[str, Any] | None = None) -> None:
        import ray
        from ray import serve

        from inhouse.bootstrap import build_embedder_for

        uncap_threads()
        settings = Settings()  # this machine's: its INHOUSE_DATA_DIR, INHOUSE_CONFIG, INHOUSE_* variables
        if kb:
            settings.kb = settings.kb.model_copy(update={k: v for k, v in kb.items() if k in KB_FIELDS})
        self._embedder: Embedder = build_embedder_for(settings)
        prepare = getattr(self._embedder, "prepare", None)
        if callable(prepare):
            prepare()  # the model is loaded now: the replica is ready once it is
        self.info = EmbedderInfo(self._embedder.name, self._embedder.dim,
                                 serve.get_replica_context().replica_id.unique_id,
                                 ray.get_runtime_context().get_node_id(), os.getpid())
        self._calls = self._passages = self._queries = 0
        log.info("embedder replica %s (%s) on node %s", self.info.replica, self.info.name, self.info.node_id)

    async def describe(self, replica_id: str | None = None) -> EmbedderInfo:
        return self.info

    async def embed_passages(self, texts: list[str]) -> np.ndarray | ErrorRecord:
        out = await self._run(self._embedder.embed_passages, texts)
        if not isinstance(out, ErrorRecord):
            self._calls += 1
            self._passages += len(texts)
        return out

    async def embed_query(self, text: str) -> np.ndarray | ErrorRecord:
        out = await self._run(self._embedder.embed_query, text)
        if not isinstance(out, ErrorRecord):
            self._calls += 1
            self._queries += 1
        return out

    async def _run(self, fn: Callable[[Any], T], arg: Any) -> T | ErrorRecord:
        """Off the event loop (health checks and stats stay answered while a batch embeds); the embedder
        serialises its own calls."""
        try:
            return await asyncio.to_thread(fn, arg)
        except InhouseError as exc:
            return error_record(exc)

    async def stats(self, replica_id: str | None = None) -> dict[str, Any]:
        """Who this replica is and what it served: ``calls`` answered, ``passages`` and ``queries`` embedded."""
        return {**asdict(self.info), "calls": self._calls, "passages": self._passages, "queries": self._queries}

    def __del__(self) -> None:
        close = getattr(getattr(self, "_embedder", None), "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("closing the embedder replica failed")
