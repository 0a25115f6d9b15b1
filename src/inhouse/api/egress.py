"""HTTP side of egress: answer a request the policy sent to an external provider, and list external models.

The decision itself is made in ``governance/egress/router.py``; this module only relays the provider's answer
(placeholders already restored by ``ExternalProviderClient``) in the OpenAI wire format, adding the
``inhouse`` extension field and the ``X-Inhouse-Destination`` / ``X-Inhouse-Egress`` headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from inhouse.api.streaming import DONE, SSEResponse, encode_event, error_event, run_until_disconnect
from inhouse.errors import InhouseError, Unavailable

if TYPE_CHECKING:
    from inhouse.governance.egress.client import ExternalProviderClient
    from inhouse.governance.egress.router import EgressRouter, RoutedRequest

log = logging.getLogger(__name__)


async def serve_external(client: ExternalProviderClient | None, routed: RoutedRequest, request: Request,
                         stream: bool) -> Response:
    if client is None:
        raise Unavailable("No external provider client is configured; nothing was sent.",
                          code="provider_unavailable")
    ext = routed.extension()
    if not stream:
        data = await run_until_disconnect(request, client.complete(routed))
        data["inhouse"] = ext
        return JSONResponse(data, headers=routed.headers())
    chunks = client.stream(routed)
    try:
        # Before the first chunk a failure can still be a real HTTP status (502-like 503, 403…).
        first = await run_until_disconnect(request, chunks.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    return SSEResponse(_events(first, chunks, ext), headers=routed.headers())


async def _events(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]],
                  ext: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        if first is not None:
            yield encode_event({**first, "inhouse": ext})
        async for chunk in rest:
            yield encode_event(chunk)
        yield DONE
    except InhouseError as exc:
        log.warning("external stream failed: %s", exc.message)
        yield error_event(exc.message, exc.type, exc.code)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def external_model_entries(router: EgressRouter | None) -> list[dict[str, Any]]:
    """GET /v1/models entries of the models external providers serve (per the current policy)."""
    if router is None:
        return []
    return [{"id": m["id"], "object": "model", "created": 0, "owned_by": m["provider"], "external": True, **m}
            for m in router.external_models()]


def with_extension(body: dict[str, Any], routed: RoutedRequest | None) -> dict[str, Any]:
    if routed is not None:
        body["inhouse"] = routed.extension()
    return body
