"""Answers from an external provider, for requests the egress policy sent out (``governance/egress/router.py``
decides; ``ExternalProviderClient`` sends the redacted request and restores the placeholders in the answer).

``relay`` waits for the provider's answer, or for its first chunk when streaming, so that a provider failure
before anything was sent is still a real HTTP status; ``wire.py`` sends it on with the ``inhouse`` extension field
and the ``X-Inhouse-Destination`` / ``X-Inhouse-Egress`` headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.api.streaming import run_until_disconnect

if TYPE_CHECKING:
    from starlette.requests import Request

    from inhouse.governance.egress.client import ExternalProviderClient
    from inhouse.governance.egress.router import EgressRouter, RoutedRequest
    from inhouse.kb.answer import Grounding


@dataclass
class Relayed:
    """What an external provider answered: the whole body, or the first chunk and the rest of a stream."""

    routed: RoutedRequest
    grounding: Grounding | None
    body: dict[str, Any] | None = None  # not streamed
    first: dict[str, Any] | None = None  # streamed: the first chunk (None: the provider sent none) …
    rest: AsyncIterator[dict[str, Any]] | None = None  # … and the others


async def relay(client: ExternalProviderClient, routed: RoutedRequest, request: Request, *, stream: bool,
                grounding: Grounding | None) -> Relayed:
    if not stream:
        body = await run_until_disconnect(request, client.complete(routed))
        return Relayed(routed, grounding, body=body)
    chunks = client.stream(routed)
    try:
        # Before the first chunk a failure can still be a real HTTP status (502-like 503, 403…).
        first = await run_until_disconnect(request, chunks.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    return Relayed(routed, grounding, first=first, rest=chunks)


def external_model_entries(router: EgressRouter) -> list[dict[str, Any]]:
    """GET /v1/models entries of the models external providers serve (per the current policy)."""
    return [{"id": m["id"], "object": "model", "created": 0, "owned_by": m["provider"], "external": True, **m}
            for m in router.external_models()]
