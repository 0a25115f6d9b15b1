"""What route modules share besides ``auth`` (who may call), ``streaming`` (SSE) and ``errors`` (the error shape):
the typed services of the app a request came to, and reading bodies that FastAPI does not parse for us (a JSON
object or a multipart upload on the same route).

Route modules import this module, never each other and never ``api/app.py`` (the boundary test checks it).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection, Request

from inhouse.api.errors import validation_message
from inhouse.errors import InvalidRequest

if TYPE_CHECKING:
    from inhouse.services import Services


def services_of(conn: HTTPConnection) -> Services:
    """The ``Services`` the app was built with (``build_app`` keeps them on ``app.state``)."""
    return cast("Services", conn.app.state.services)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """A multipart body's ``file`` and its other fields as text. Missing file or too big → InvalidRequest."""
    form = await request.form(max_files=1, max_fields=20)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Send the document as a multipart field named 'file'.", param="file")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidRequest(f"The file is larger than {max_bytes // (1024 * 1024)} MB.", param="file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        fields["filename"] = fields.get("filename") or upload_filename(upload) or "upload"
        return data, fields
    finally:
        await form.close()


# WHATWG multipart/form-data: browsers (and httpx) write '"', CR and LF in a part's filename as %22, %0D and %0A.
_FORM_ESCAPES = re.compile(r"%(22|0D|0A)")


def upload_filename(upload: UploadFile) -> str | None:
    """The name of the uploaded file as the user's disk has it: ``Q3 "draft".txt`` arrives as ``Q3 %22draft%22.txt``
    and was stored so (a second document when the CLI ingested the same file). Exactly the three escapes browsers
    write are decoded, never any other: ``100%25.txt`` is a name of its own."""
    name = upload.filename
    return _FORM_ESCAPES.sub(lambda m: chr(int(m[1], 16)), name) if name else name


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    """The body validated as ``model``; bad JSON or a bad field → InvalidRequest naming the field. These routes take
    up to ``apps.max_upload_mb`` (100 MB): above ``_INLINE_BYTES`` a body is decoded and validated in a worker thread,
    and refused unread when it holds more than ``_MAX_VALUES`` values, which no worker thread makes cheap."""
    body = await request.body()
    if len(body) <= _INLINE_BYTES:
        return _decode_json(body, model)
    return await run_in_threadpool(_decode_json, body, model)


# Below it a body decodes in well under a millisecond, less than a worker thread's hand-over costs.
_INLINE_BYTES = 64 * 1024


def _decode_json(body: bytes, model: type[BaseModel]) -> Any:
    if len(body) > _INLINE_BYTES and _values_over(body, _MAX_VALUES):
        raise InvalidRequest(f"The body holds more than {_MAX_VALUES:,} JSON values.")
    try:
        raw = json.loads(body)
    except ValueError:  # UnicodeDecodeError (not UTF-8) is one too
        raise InvalidRequest("The body is not valid JSON.") from None
    if _SURROGATE_ESCAPE.search(body):
        _refuse_lone_surrogate(raw)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # The same message as FastAPI's own validation (api/errors.py), bounded the same way.
        message, param = validation_message(exc.errors())
        raise InvalidRequest(message, param=param) from None


# json.loads holds the GIL for the whole call, in a worker thread too, so the event loop waits for it all the same:
# 30 ns a value (100 MB of "0," is 1.5 s), but a few long strings, what these bodies hold, are 0.15 s for 100 MB.
# These routes take a few fields (at most 500 attendees): 100,000 values (3 ms of decoding) is far above any.
_MAX_VALUES = 100_000
_STRUCTURE = (b",", b":", b"[", b"{")  # every JSON value but the whole body's follows one of them


def _values_over(body: bytes, most: int) -> bool:
    """Whether the JSON ``body`` holds more than about ``most`` values, told without holding the GIL long: an upper
    bound from C-speed counts first; only when it is over (text with many commas) are the strings left out."""
    if sum(body.count(c) for c in _STRUCTURE) <= most:
        return False
    # Without its escaped backslashes and quotes (paired from the left, as JSON does), a body's every quote opens or
    # closes a string; one step a string, and strings count as values: at most ``most`` steps.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    values, pos = 0, 0
    while values <= most:
        start = plain.find(b'"', pos)
        values += sum(plain.count(c, pos, len(plain) if start < 0 else start) for c in _STRUCTURE) + 1
        end = plain.find(b'"', start + 1) if start >= 0 else -1
        if end < 0:
            return values > most  # the end, or a string never closed: json.loads says it is not JSON
        pos = end + 1
    return True


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # only an escape can make one: UTF-8 cannot encode surrogates


async def refuse_lone_surrogates(request: Request) -> None:
    """A JSON body with a lone UTF-16 surrogate (``"\\ud800"`` without its pair) is a 400: ``json.loads`` keeps it,
    and no tokenizer, store or log can encode it (it was a 500 deep in the engine). Bodies without such an escape,
    nearly all, cost one regex scan; a pair (an emoji some clients escape) is joined by ``json.loads`` and passes.
    Above ``_INLINE_BYTES`` the scan, and the decoding a body with such an escape needs, run in a worker thread."""
    if not request.headers.get("content-type", "application/json").lower().startswith("application/json"):
        return
    body = await request.body()  # cached: the route reads the same bytes
    if len(body) <= _INLINE_BYTES:
        _check_surrogates(body)
    else:
        await run_in_threadpool(_check_surrogates, body)


def _check_surrogates(body: bytes) -> None:
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        raw = json.loads(body)
    except ValueError:
        return  # not JSON: the route says so
    _refuse_lone_surrogate(raw)


def _refuse_lone_surrogate(raw: object) -> None:
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("The body holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair): "
                             "it is not text.") from None
