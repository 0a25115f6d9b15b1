"""The client that talks to external OpenAI-compatible providers: the only code that sends prompts out.

It takes a ``RoutedRequest`` and refuses anything the policy did not allow (``goes_out``), so a wiring
mistake cannot bypass the decision. Answers come back with the request's placeholders restored (also in
streams, where a placeholder may be split across chunks). Upstream failures become ``Unavailable``
(code ``provider_unavailable``) without the provider's response text, which could echo the prompt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from inhouse.errors import PermissionDenied, Unavailable
from inhouse.governance.egress.router import RoutedRequest
from inhouse.governance.pii.redact import RedactionSession, StreamRestorer

log = logging.getLogger(__name__)


class ExternalProviderClient:
    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # ``transport`` is for tests; production uses httpx's default (no proxies from the environment).
        self._transport = transport

    def _request(self, routed: RoutedRequest) -> tuple[str, dict[str, str], dict[str, Any], float]:
        provider = routed.decision.provider
        if not routed.goes_out or provider is None:
            raise PermissionDenied("This request may not be sent to an external provider.", code="egress_refused")
        key = provider.api_key()
        if key is None:
            raise Unavailable(f"The API key of provider '{provider.name}' is not set "
                              f"(environment variable {provider.api_key_env}); nothing was sent.",
                              code="provider_unavailable")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return f"{provider.base_url}/chat/completions", headers, routed.body, provider.timeout_s

    def _client(self, timeout_s: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, timeout=timeout_s, trust_env=False)

    async def complete(self, routed: RoutedRequest) -> dict[str, Any]:
        """The provider's chat.completion, placeholders restored."""
        url, headers, body, timeout = self._request(routed)
        name = routed.decision.destination
        try:
            async with self._client(timeout) as client:
                resp = await client.post(url, headers=headers, json={**body, "stream": False})
        except httpx.HTTPError as exc:
            raise _unavailable(name, type(exc).__name__) from None
        if resp.status_code >= 400:
            raise _unavailable(name, f"HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            raise _unavailable(name, "a response that is not JSON") from None
        if not isinstance(data, dict):
            raise _unavailable(name, "a response that is not a JSON object")
        return restore_completion(data, routed.session)

    async def stream(self, routed: RoutedRequest) -> AsyncIterator[dict[str, Any]]:
        """The provider's chat.completion.chunk objects, placeholders restored across chunk boundaries."""
        url, headers, body, timeout = self._request(routed)
        name = routed.decision.destination
        restorer = ChunkRestorer(routed.session)
        try:
            async with self._client(timeout) as client, \
                    client.stream("POST", url, headers=headers, json={**body, "stream": True,
                                                                      "stream_options": _with_usage(body)}) as resp:
                if resp.status_code >= 400:
                    raise _unavailable(name, f"HTTP {resp.status_code}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        raise _unavailable(name, "a stream chunk that is not JSON") from None
                    if isinstance(chunk, dict):
                        yield restorer.restore(chunk)
        except httpx.HTTPError as exc:
            raise _unavailable(name, type(exc).__name__) from None
        tail = restorer.finish()
        if tail is not None:
            yield tail


def _with_usage(body: dict[str, Any]) -> dict[str, Any]:
    """The request's ``stream_options`` asking for the usage chunk: the answer's tokens are charged to the key
    (``api/openai/relay.py`` passes the chunk on only to a client that asked for it)."""
    given = body.get("stream_options")
    return {**(given if isinstance(given, dict) else {}), "include_usage": True}


def _unavailable(provider: str, what: str) -> Unavailable:
    return Unavailable(f"The external provider '{provider}' failed ({what}).", code="provider_unavailable")


def restore_completion(data: dict[str, Any], session: RedactionSession) -> dict[str, Any]:
    for choice in data.get("choices") or []:
        msg = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(msg, dict):
            continue
        if isinstance(msg.get("content"), str):
            msg["content"] = session.restore(msg["content"])
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                fn["arguments"] = session.restore(fn["arguments"])
    return data


class ChunkRestorer:
    """Per choice (and per tool call) stream restorers; flushes held-back text when a choice finishes."""

    def __init__(self, session: RedactionSession) -> None:
        self._session = session
        self._content: dict[int, StreamRestorer] = {}
        self._args: dict[tuple[int, int], StreamRestorer] = {}
        self._last: dict[str, Any] | None = None

    def restore(self, chunk: dict[str, Any]) -> dict[str, Any]:
        self._last = chunk
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            idx = int(choice.get("index", 0) or 0)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    r = self._content.setdefault(idx, self._session.stream_restorer())
                    delta["content"] = r.feed(delta["content"])
                for call in delta.get("tool_calls") or []:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        key = (idx, int(call.get("index", 0) or 0))
                        fn["arguments"] = self._args.setdefault(key, self._session.stream_restorer()) \
                            .feed(fn["arguments"])
            if choice.get("finish_reason") is not None:
                rest, arg_rests = self._flush(idx)
                if rest or arg_rests:
                    if not isinstance(delta, dict):
                        delta = choice["delta"] = {}
                    if rest:
                        delta["content"] = (delta.get("content") or "") + rest
                    if arg_rests:
                        delta.setdefault("tool_calls", []).extend(
                            {"index": k, "function": {"arguments": t}} for k, t in arg_rests.items())
        return chunk

    def _flush(self, idx: int) -> tuple[str, dict[int, str]]:
        r = self._content.pop(idx, None)
        args = {k[1]: self._args.pop(k).finish() for k in [k for k in self._args if k[0] == idx]}
        return (r.finish() if r else ""), {k: t for k, t in args.items() if t}

    def finish(self) -> dict[str, Any] | None:
        """A last chunk with text still held back when the provider ended without a finish_reason."""
        rests = {idx: self._flush(idx)[0] for idx in list(self._content)}
        rests = {i: t for i, t in rests.items() if t}
        if not rests or self._last is None:
            return None
        base = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        return {**base, "choices": [{"index": i, "delta": {"content": t}, "finish_reason": None}
                                    for i, t in rests.items()]}
