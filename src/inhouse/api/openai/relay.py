"""Answers from an external provider, for requests the egress policy sent out (``governance/egress/router.py``
decides; ``ExternalProviderClient`` sends the redacted request and restores the placeholders in the answer).

``relay`` waits for the provider's answer, or for its first chunk when streaming, so that a provider failure
before anything was sent is still a real HTTP status; ``wire.py`` sends it on with the ``inhouse`` extension field
and the ``X-Inhouse-Destination`` / ``X-Inhouse-Egress`` headers.

The tokens an answer used are charged to the key's daily quota and written into the request's audit record like a
local generation's (``Relayed.settle``, once the answer has been passed on or abandoned): the provider's own count
(a stream is asked for its usage chunk, which the client gets only if it asked too), else an estimate of four
characters a token.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.api.streaming import run_until_disconnect
from inhouse.chat.output import Usage

if TYPE_CHECKING:
    from starlette.requests import Request

    from inhouse.governance.egress.client import ExternalProviderClient
    from inhouse.governance.egress.router import EgressRouter, RoutedRequest
    from inhouse.kb.answer import Grounding


class ProviderUsage:
    """The tokens of one external answer: the provider's ``usage`` when it reports one, else estimated from the
    characters sent and received (four a token: OpenAI's rule of thumb), so an answer is never free."""

    CHARS_PER_TOKEN = 4

    def __init__(self, sent: Mapping[str, Any]) -> None:
        self._prompt_chars = len(json.dumps(sent.get("messages"), ensure_ascii=False))
        self._answer_chars = 0
        self._reported: Usage | None = None

    def see(self, payload: Mapping[str, Any]) -> None:
        """A whole answer or a stream chunk."""
        reported = payload.get("usage")
        if isinstance(reported, Mapping):
            with contextlib.suppress(TypeError, ValueError):  # a malformed count: estimated instead
                self._reported = Usage(int(reported.get("prompt_tokens") or 0),
                                       int(reported.get("completion_tokens") or 0))
        for choice in payload.get("choices") or []:
            part = (choice.get("delta") or choice.get("message")) if isinstance(choice, Mapping) else None
            if isinstance(part, Mapping):
                self._answer_chars += len(part.get("content") or "") + len(json.dumps(part.get("tool_calls") or ""))

    def usage(self) -> Usage:
        if self._reported is not None:
            return self._reported
        return Usage(-(-self._prompt_chars // self.CHARS_PER_TOKEN), -(-self._answer_chars // self.CHARS_PER_TOKEN))


@dataclass
class Relayed:
    """What an external provider answered: the whole body, or the first chunk and the rest of a stream."""

    routed: RoutedRequest
    grounding: Grounding | None
    body: dict[str, Any] | None = None  # not streamed
    first: dict[str, Any] | None = None  # streamed: the first chunk (None: the provider sent none) …
    rest: AsyncIterator[dict[str, Any]] | None = None  # … and the others
    tally: ProviderUsage | None = None
    on_usage: Callable[[Usage], None] | None = None
    _settled: bool = False

    def settle(self) -> None:
        """Charge and audit the answer's tokens, once (the wires call it when the answer ends or is abandoned)."""
        if self._settled or self.tally is None or self.on_usage is None:
            return
        self._settled = True
        self.on_usage(self.tally.usage())


async def relay(client: ExternalProviderClient, routed: RoutedRequest, request: Request, *, stream: bool,
                grounding: Grounding | None, on_usage: Callable[[Usage], None] | None = None) -> Relayed:
    tally = ProviderUsage(routed.body)
    if not stream:
        body = await run_until_disconnect(request, client.complete(routed))
        tally.see(body)
        answered = Relayed(routed, grounding, body=body, tally=tally, on_usage=on_usage)
        answered.settle()
        return answered
    chunks = client.stream(routed)
    try:
        # Before the first chunk a failure can still be a real HTTP status (502-like 503, 403…).
        first = await run_until_disconnect(request, chunks.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    options = routed.body.get("stream_options")
    asked = isinstance(options, Mapping) and bool(options.get("include_usage"))
    if first is not None:
        tally.see(first)
    return Relayed(routed, grounding, first=first, rest=_counted(chunks, tally, asked), tally=tally,
                   on_usage=on_usage)


async def _counted(chunks: AsyncIterator[dict[str, Any]], tally: ProviderUsage,
                   asked: bool) -> AsyncIterator[dict[str, Any]]:
    """The provider's chunks, counted; its usage chunk (no choices) passed on only to a client that asked for it:
    a client that did not may read ``choices[0]`` of every chunk."""
    try:
        async for chunk in chunks:
            tally.see(chunk)
            if asked or chunk.get("choices") or "usage" not in chunk:
                yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def external_model_entries(router: EgressRouter) -> list[dict[str, Any]]:
    """GET /v1/models entries of the models external providers serve (per the current policy)."""
    return [{"id": m["id"], "object": "model", "created": 0, "owned_by": m["provider"], "external": True, **m}
            for m in router.external_models()]
