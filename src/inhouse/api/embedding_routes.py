"""``POST /v1/embeddings`` in OpenAI's shape, served by the knowledge base's embedder (multilingual-e5-small).

Models: e5 embeds a search query and a passage differently (``"query: "`` / ``"passage: "``). Clients whose embedding
class has one model name (LangChain's ``OpenAIEmbeddings``, LlamaIndex's ``OpenAILikeEmbedding``) choose with the
model id: ``multilingual-e5-small`` (passages, the default) or ``multilingual-e5-small:query``
(``…:passage`` also works); ``input_type`` (``query``/``passage``/``document``) overrides it. Any other model id is a
404, as for chat. These ids are listed in ``/v1/models`` (``kb.embed.embedding_model_ids``).

Input: a string, a list of strings, token ids or a list of token-id lists. Token ids are the embedding model's own
vocabulary (e5's SentencePiece ids, as ``kb/e5_tokenizer.py`` makes them, without the prefix): they are turned back
into the text they tokenize and embedded like it. Ids that are not this tokenizer's tokenization of any text (such
as tiktoken's, which LangChain sends by default) are refused with a message that says what to do, never embedded
as garbage. ``encoding_format`` ``float`` or ``base64`` (little-endian float32, as OpenAI sends).
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
from inhouse.errors import InvalidRequest
from inhouse.kb.embed import is_query_model
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.governance.quotas import QuotaService
    from inhouse.kb.embed import Embedder

MAX_INPUTS = 256
MAX_INPUT_CHARS = 32_000
MAX_INPUT_TOKENS = 8192


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    # Checked by ``_texts`` (one clear message instead of one per member of a union).
    input: str | Annotated[list[Any], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage", "document"] | None = None
    dimensions: PositiveCount | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _texts(raw: str | list[Any], embedder: Embedder) -> list[str]:
    shape = ("'input' must be a string, a list of strings, a list of token ids or a list of lists of token ids "
             f"(at most {MAX_INPUTS} inputs).")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif all(type(t) is int for t in raw):
        items = [raw]
    else:
        items = raw
    texts: list[str] = []
    for item in items:
        if isinstance(item, str):
            if len(item) > MAX_INPUT_CHARS:
                raise InvalidRequest(f"An input has more than {MAX_INPUT_CHARS} characters.", param="input")
            texts.append(item)
        elif isinstance(item, list) and item and all(type(t) is int for t in item):
            if len(item) > MAX_INPUT_TOKENS:
                raise InvalidRequest(f"An input has more than {MAX_INPUT_TOKENS} tokens.", param="input")
            texts.append(embedder.text_of_tokens(item))
        else:
            raise InvalidRequest(shape, param="input")
    return texts


def add_embedding_routes(router: APIRouter, embedder: Embedder, quotas: QuotaService) -> None:
    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest,
                         actor: Actor = Depends(require("embeddings:create"))) -> EmbeddingResponse:
        is_query = is_query_model(embedder, body.model, body.input_type)
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise InvalidRequest(f"This model makes {embedder.dim}-dimensional vectors.", param="dimensions")

        def run() -> tuple[np.ndarray, int]:
            texts = _texts(body.input, embedder)
            # Queries one by one (each is short); passages in one batch.
            vecs = (np.vstack([embedder.embed_query(t) for t in texts]) if is_query
                    else embedder.embed_passages(texts))
            return vecs, sum(embedder.count_tokens(t) for t in texts)

        vectors, n_tokens = await run_in_threadpool(run)
        # Metered like a generation: the key's daily token quota counts what was embedded.
        await run_in_threadpool(quotas.record_usage, actor.key_id, n_tokens)
        data = []
        for i, v in enumerate(vectors):
            emb: Any = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                        if body.encoding_format == "base64" else [float(x) for x in v])
            data.append(Embedding(index=i, embedding=emb))
        return EmbeddingResponse(data=data, model=body.model, usage=EmbeddingUsage(prompt_tokens=n_tokens,
                                                                                   total_tokens=n_tokens))
