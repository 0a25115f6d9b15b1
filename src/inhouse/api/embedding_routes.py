"""``POST /v1/embeddings`` in OpenAI's shape, served by the knowledge base's embedder (multilingual-e5-small).

``input_type`` (``query`` or ``passage``, default ``passage``; also read from a model name containing "query")
selects e5's prefix. ``encoding_format`` ``float`` or ``base64`` (little-endian float32, as OpenAI sends).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from inhouse.api.auth import require
from inhouse.api.bounds import PositiveCount
from inhouse.api.responses import EmbeddingList
from inhouse.errors import InvalidRequest

if TYPE_CHECKING:
    from inhouse.kb.embed import Embedder

MAX_INPUTS = 256
MAX_INPUT_CHARS = 32_000


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, StringConstraints(max_length=256)] = ""
    input: (Annotated[str, StringConstraints(max_length=MAX_INPUT_CHARS)]
            | Annotated[list[Annotated[str, StringConstraints(max_length=MAX_INPUT_CHARS)]],
                        Field(min_length=1, max_length=MAX_INPUTS)])
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage", "document"] | None = None
    dimensions: PositiveCount | None = None
    user: str | None = None


def add_embedding_routes(router: APIRouter, embedder: Embedder) -> None:
    @router.post("/v1/embeddings", dependencies=[Depends(require("embeddings:create"))],
                 responses={200: {"model": EmbeddingList}})
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise InvalidRequest(f"This model makes {embedder.dim}-dimensional vectors.", param="dimensions")
        is_query = body.input_type == "query" or (body.input_type is None and "query" in body.model)

        def run() -> tuple[np.ndarray, int]:
            # Queries one by one (each is short); passages in one batch.
            vecs = (np.vstack([embedder.embed_query(t) for t in texts]) if is_query
                    else embedder.embed_passages(texts))
            return vecs, sum(embedder.count_tokens(t) for t in texts)

        vectors, n_tokens = await run_in_threadpool(run)
        data = []
        for i, v in enumerate(vectors):
            emb: Any = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                        if body.encoding_format == "base64" else [float(x) for x in v])
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": embedder.name,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
