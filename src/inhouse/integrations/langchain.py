"""LangChain classes for inhouse (``pip install 'inhouse[langchain]'``): thin layers over ``langchain-openai``.

* ``ChatInhouse``: ``ChatOpenAI`` pointed at inhouse. With ``knowledge={"collections": [...]}`` it answers from the
  company's documents; the citations the server sends (a ``citations`` field, or a last streamed chunk) are kept in
  the message's ``response_metadata["citations"]``, where plain ``ChatOpenAI`` drops them.
* ``InhouseRetriever``: ``/v1/search`` with the caller's own key, so the server applies that person's access to
  every collection and document, inside anyone's chain.
* ``InhouseEmbeddings``: ``OpenAIEmbeddings`` that sends text (never tiktoken ids, which are another tokenizer's)
  and embeds queries as e5 queries (``embed_query`` → the ``multilingual-e5-small:query`` model id) and documents as
  passages.

Each takes ``base_url`` (``http://host:8000/v1``) and ``api_key`` like the OpenAI classes, or reads
``INHOUSE_BASE_URL`` / ``INHOUSE_API_KEY``.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import Field, SecretStr

EMBEDDING_MODEL = "multilingual-e5-small"


def _base_url(value: str | None) -> str:
    url = value or os.environ.get("INHOUSE_BASE_URL") or "http://127.0.0.1:8000/v1"
    return url.rstrip("/")


def _api_key(value: str | SecretStr | None) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    key = value or os.environ.get("INHOUSE_API_KEY")
    if not key:
        raise ValueError("An inhouse API key is needed: pass api_key=… or set INHOUSE_API_KEY.")
    return SecretStr(key)


class ChatInhouse(ChatOpenAI):  # type: ignore[misc]
    """``ChatOpenAI`` for inhouse, keeping citations (and the knowledge options) in ``response_metadata``."""

    knowledge: dict[str, Any] | None = None
    """Answer from company documents: ``{"collections": ["hr"], "top_k": 5}`` (``{}``: every collection you may
    read). The answer's citations arrive in ``response_metadata["citations"]``."""

    def __init__(self, *, base_url: str | None = None, api_key: str | SecretStr | None = None,
                 knowledge: dict[str, Any] | None = None, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra_body", None) or {})
        if knowledge is not None:
            extra["knowledge"] = knowledge
        super().__init__(base_url=_base_url(base_url), api_key=_api_key(api_key), extra_body=extra or None,
                         knowledge=knowledge, **kwargs)

    def _create_chat_result(self, response: Any, generation_info: dict[str, Any] | None = None) -> ChatResult:
        result: ChatResult = super()._create_chat_result(response, generation_info)
        body = response if isinstance(response, dict) else response.model_dump()
        if "citations" in body:
            for gen in result.generations:
                gen.message.response_metadata["citations"] = body["citations"]
                if self.knowledge is not None:
                    gen.message.response_metadata["knowledge"] = self.knowledge
        return result

    def _convert_chunk_to_generation_chunk(self, chunk: dict[str, Any], default_chunk_class: type,
                                           base_generation_info: dict[str, Any] | None) -> ChatGenerationChunk | None:
        gen: ChatGenerationChunk | None = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info)
        if "citations" not in chunk:
            return gen
        # The last chunk before [DONE]: no choices, the citations of the whole answer.
        metadata: dict[str, Any] = {"citations": chunk["citations"]}
        if self.knowledge is not None:
            metadata["knowledge"] = self.knowledge
        if gen is None:
            return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=metadata))
        gen.message.response_metadata.update(metadata)
        return gen


class InhouseRetriever(BaseRetriever):  # type: ignore[misc]
    """Ranked passages from ``/v1/search``, as the key's owner may see them (their access applies on the server)."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    collections: list[str] | None = None
    top_k: int = 5
    filters: dict[str, Any] | None = None
    timeout_s: float = 60.0
    http_client: Any = Field(default=None, exclude=True)  # an httpx.Client to reuse (tests, proxies)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        body: dict[str, Any] = {"query": query, "top_k": self.top_k}
        if self.collections is not None:
            body["collections"] = self.collections
        if self.filters is not None:
            body["filters"] = self.filters
        headers = {"Authorization": f"Bearer {_api_key(self.api_key).get_secret_value()}"}
        url = _base_url(self.base_url) + "/search"
        client = self.http_client or httpx
        r = client.post(url, json=body, headers=headers, timeout=self.timeout_s)
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:300]
            raise ValueError(f"inhouse search failed ({r.status_code}): {message}")
        docs = []
        for hit in r.json()["data"]:
            meta = {k: v for k, v in hit.items() if k != "text"}
            docs.append(Document(page_content=hit["text"], metadata=meta, id=hit.get("chunk_id")))
        return docs


class InhouseEmbeddings(OpenAIEmbeddings):  # type: ignore[misc]
    """multilingual-e5-small through ``/v1/embeddings``: documents as passages, ``embed_query`` as a query."""

    def __init__(self, *, base_url: str | None = None, api_key: str | SecretStr | None = None,
                 model: str = EMBEDDING_MODEL, **kwargs: Any) -> None:
        # Text, never token ids: LangChain's default tokenizes with tiktoken (another vocabulary, and a download).
        kwargs.setdefault("check_embedding_ctx_length", False)
        super().__init__(openai_api_base=_base_url(base_url), openai_api_key=_api_key(api_key), model=model, **kwargs)

    def embed_query(self, text: str, **kwargs: Any) -> list[float]:
        return self._query_twin().embed_documents([text], **kwargs)[0]  # type: ignore[no-any-return]

    async def aembed_query(self, text: str, **kwargs: Any) -> list[float]:
        return (await self._query_twin().aembed_documents([text], **kwargs))[0]  # type: ignore[no-any-return]

    def _query_twin(self) -> OpenAIEmbeddings:
        base = self.model.split(":", 1)[0]
        return self.model_copy(update={"model": f"{base}:query"})
