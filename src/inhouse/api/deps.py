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
        fields["filename"] = fields.get("filename") or upload.filename or "upload"
        return data, fields
    finally:
        await form.close()


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    """The body validated as ``model``; bad JSON or a bad field → InvalidRequest naming the field."""
    try:
        raw = await request.json()
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.") from None
    await refuse_lone_surrogates(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # The same message as FastAPI's own validation (api/errors.py), bounded the same way.
        message, param = validation_message(exc.errors())
        raise InvalidRequest(message, param=param) from None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # only an escape can make one: UTF-8 cannot encode surrogates


async def refuse_lone_surrogates(request: Request) -> None:
    """A JSON body with a lone UTF-16 surrogate (``"\\ud800"`` without its pair) is a 400: ``json.loads`` keeps it,
    and no tokenizer, store or log can encode it (it was a 500 deep in the engine). Bodies without such an escape,
    nearly all, cost one regex scan; a pair (an emoji some clients escape) is joined by ``json.loads`` and passes."""
    if not request.headers.get("content-type", "application/json").lower().startswith("application/json"):
        return
    body = await request.body()  # cached: the route reads the same bytes
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False)
    except ValueError:
        return  # not JSON: the route says so
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("The body holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair): "
                             "it is not text.") from None
