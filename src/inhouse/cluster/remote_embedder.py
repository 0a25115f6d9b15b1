"""``RemoteEmbedder``: the ``Embedder`` of an ingress whose embeddings are computed by the Embedder deployment
(``cluster/embed_server.py``), wired by ``cluster/ingress.py`` into ``bootstrap.build_services``.

* ``embed_passages`` (ingestion) and ``embed_query`` (every search, the embeddings API) are short calls to one of
  the deployment's replicas (the least loaded), made from the worker threads the routes already run them in.
* ``name``, ``dim``, ``count_tokens`` and ``text_of_tokens`` stay local: they are the tokenizer's and the model
  file's header, which the ingress reads without loading the model (``local``: ``bootstrap.build_embedder_tokens``,
  used only for these, so its weights are never loaded here). ``count_tokens`` runs once per input
  of every embeddings request: a round trip each would cost more than the tokenizer does.
* ``prepare`` (before an ingestion's first batch) waits for a replica (a cold start when there is none) and
  checks that it runs the model the index's vectors come from.

Failures map to the error hierarchy (``remote.call_replica``): no replica within ``cluster.call_timeout_s`` or a
replica that went away is ``Unavailable`` (503, retry), an error the replica raised keeps its kind, an answer of the
wrong shape is ``EngineFailure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inhouse.cluster.remote import call_replica
from inhouse.errors import EngineFailure

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from inhouse.cluster.embed_server import EmbedderInfo
    from inhouse.kb.embed import Embedder

WHAT = "the embedder"


class RemoteEmbedder:
    """Implements ``Embedder`` over the Embedder deployment's replicas; ``local`` answers the tokenizer's part."""

    def __init__(self, handle: DeploymentHandle, *, local: Embedder, call_timeout_s: float) -> None:
        self._handle = handle
        self._local = local
        self._timeout_s = call_timeout_s

    @property
    def name(self) -> str:
        return self._local.name

    @property
    def dim(self) -> int:
        return self._local.dim

    def _call(self, method: str, *args: Any) -> Any:
        return call_replica(self._handle, method, *args, what=WHAT, timeout_s=self._timeout_s)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._checked(self._call("embed_passages", items), (len(items), self.dim))

    def embed_query(self, text: str) -> np.ndarray:
        return self._checked(self._call("embed_query", text), (self.dim,))

    def count_tokens(self, text: str) -> int:
        return self._local.count_tokens(text)

    def text_of_tokens(self, ids: Sequence[int]) -> str:
        return self._local.text_of_tokens(ids)

    def prepare(self) -> None:
        info: EmbedderInfo = self._call("describe")
        if (info.name, info.dim) != (self.name, self.dim):
            raise EngineFailure(f"The embedder replica on node {info.node_id[:12]} runs {info.name} ({info.dim}-d), "
                                f"but this ingress indexes with {self.name} ({self.dim}-d): install the same "
                                "inhouse version on every machine.")

    def close(self) -> None:
        """The local tokenizer's file is unmapped; the replicas are the deployment's and stay."""
        close = getattr(self._local, "close", None)
        if callable(close):
            close()

    def _checked(self, out: Any, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != shape:
            got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
            raise EngineFailure(f"The embedder replica answered {got}, expected an array of shape {shape}.")
        return out.astype(np.float32, copy=False)
