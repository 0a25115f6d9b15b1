"""The Responses API (``POST /v1/responses``) as a translation onto the chat-completions serving path.

A Responses request becomes a chat request (``Turn``): ``instructions`` → a system message, the stored conversation
of ``previous_response_id`` (from ``store/responses.py``) → the messages before the new input, input items
(messages with text parts, ``function_call`` and ``function_call_output``) → chat messages, function ``tools`` and
``tool_choice`` → chat's, ``text.format`` → ``response_format`` (json_schema and json_object are enforced by the
same grammar), ``max_output_tokens`` → ``max_tokens``, ``top_logprobs`` → ``logprobs``. Then ``serving.py`` runs it
exactly as it runs a chat completion: the same auth, quotas, knowledge extension, egress policy, audit and engine.
``responses_wire.py`` shapes what comes back into a ``response`` object or the typed server-sent events.

What is not supported is refused with a 400 naming the field: non-text input (images, files), built-in tools (web
or file search, computer use…), ``background``, ``conversation``, ``item_reference`` input items.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from inhouse.api.bounds import PositiveCount
from inhouse.api.schemas import HARD_MAX_MESSAGES, MAX_TOOLS, KnowledgeOptions
from inhouse.engine.params import MAX_LOGPROBS
from inhouse.errors import InvalidRequest
from inhouse.governance.egress.router import conversation_label
from inhouse.governance.labels import Label, max_label

if TYPE_CHECKING:
    from inhouse.store.responses import StoredResponse

LOGPROBS_INCLUDE = "message.output_text.logprobs"
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ResponseRequest(BaseModel):
    """The request body (bounded like the chat body; unknown fields are ignored, as OpenAI clients send extras)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: ModelName
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=HARD_MAX_MESSAGES)]
    instructions: str | None = None
    previous_response_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    store: bool = True
    stream: bool = False
    tools: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: PositiveCount | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    include: Annotated[list[str], Field(max_length=16)] | None = None
    metadata: Annotated[dict[str, Annotated[str, StringConstraints(max_length=512)]],
                        Field(max_length=16)] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    truncation: Literal["disabled", "auto"] | None = None
    reasoning: dict[str, Any] | None = None  # accepted and ignored: these models do not reason in hidden tokens
    background: bool | None = None
    conversation: Any = None
    # Our extensions, as on chat completions.
    knowledge: KnowledgeOptions | None = None  # validated here, as on chat completions (never a 500 later)
    inhouse: dict[str, Any] | None = None


class ResponseObject(BaseModel):
    """OpenAI's ``response`` object (the fields every answer has; the rest ride along), for the API description."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class ItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    has_more: bool
    first_id: str | None
    last_id: str | None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Turn:
    """One Responses request, translated: the chat body to serve and what is needed to answer and to store it."""

    body: ResponseRequest
    chat_body: dict[str, Any]
    history: list[dict[str, Any]]  # the chat messages before this turn's input (the previous response's)
    new_messages: list[dict[str, Any]]  # this turn's input, as chat messages
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def input_items(self) -> list[dict[str, Any]]:
        raw = self.body.input
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}] \
            if isinstance(raw, str) else list(raw)

    def conversation(self, answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What is stored for a later ``previous_response_id``: history, this input, the answer (no instructions)."""
        return [*self.history, *self.new_messages, *answer]


def build_turn(body: ResponseRequest, previous: StoredResponse | None) -> Turn:
    if body.background:
        raise InvalidRequest("'background' responses are not supported; omit it (or send false).", param="background")
    if body.conversation is not None:
        raise InvalidRequest("'conversation' is not supported; continue with previous_response_id.",
                             param="conversation")
    history = list(previous.messages) if previous is not None else []
    new_messages = input_messages(body.input)
    messages = ([{"role": "system", "content": body.instructions}] if body.instructions else []) + history + \
        new_messages
    chat: dict[str, Any] = {"model": body.model, "messages": messages}
    if body.tools:
        chat["tools"] = [_chat_tool(t, i) for i, t in enumerate(body.tools)]
    if body.tool_choice is not None:
        chat["tool_choice"] = _chat_tool_choice(body.tool_choice)
    fmt = _response_format(body.text)
    if fmt is not None:
        chat["response_format"] = fmt
    for ours, theirs in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("metadata", "metadata"), ("user", "user"), ("knowledge", "knowledge"),
                         ("inhouse", "inhouse")):
        value = getattr(body, ours)
        if value is not None:
            chat[theirs] = value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value
    if body.top_logprobs is not None or LOGPROBS_INCLUDE in (body.include or ()):
        chat["logprobs"] = True
        chat["top_logprobs"] = body.top_logprobs or 0
    if previous is not None and previous.label is not None:
        # The history holds the earlier answer, whose label the egress decision could not see again (passages it
        # was grounded on, a label the earlier request declared): the conversation is at least that sensitive.
        ext = dict(chat.get("inhouse") or {})
        ext["label"] = max_label([conversation_label(chat, Label.PUBLIC), previous.label]).value
        chat["inhouse"] = ext
    return Turn(body, chat, history, new_messages)


def input_messages(raw: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items → chat messages (function calls join the assistant message before them, or start one)."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"{where}: 'role' must be user, system, developer or assistant.", param="input")
            out.append({"role": role, "content": _text_of(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": _str(item, "call_id", where), "type": "function",
                    "function": {"name": _str(item, "name", where), "arguments": _str(item, "arguments", where)}}
            last = out[-1] if out else None
            # A response's output (its text, then its calls) sent back as input is one assistant turn, as the
            # stored conversation of previous_response_id has it.
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, where)
            out.append({"role": "tool", "tool_call_id": _str(item, "call_id", where), "content": text})
        elif kind == "reasoning":
            continue  # another server's hidden reasoning: nothing for these models to read
        else:
            raise InvalidRequest(f"{where}: input items of type '{kind}' are not supported (messages, function_call "
                                 "and function_call_output are).", param="input")
    return out


def _str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: '{key}' must be a string.", param="input")
    return value


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind not in ("input_text", "output_text", "text") or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{where}: only text content is supported (input_text / output_text parts).",
                                     param="input")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequest(f"{where}: 'content' must be a string or a list of text parts.", param="input")


def _chat_tool(tool: Mapping[str, Any], i: int) -> dict[str, Any]:
    if tool.get("type") != "function" or not isinstance(tool.get("name"), str) or not tool["name"]:
        raise InvalidRequest(f"tools[{i}]: only function tools are supported ({{'type': 'function', 'name': …, "
                             "'parameters': {…}}).", param="tools")
    fn = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
    return {"type": "function", "function": fn}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("'tool_choice' must be none, auto, required or {'type': 'function', 'name': …}.",
                         param="tool_choice")


def _response_format(text: Mapping[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        raise InvalidRequest("'text.format' must be an object.", param="text")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name", "output"), "schema": fmt.get("schema"),
                                                        "strict": fmt.get("strict")}}
    raise InvalidRequest("'text.format.type' must be text, json_object or json_schema.", param="text")


def format_of(body: ResponseRequest) -> dict[str, Any]:
    """The ``text`` field of the response object: what was asked, ``{"format": {"type": "text"}}`` by default."""
    fmt = (body.text or {}).get("format")
    return {"format": dict(fmt) if isinstance(fmt, Mapping) else {"type": "text"}}


def item_resources(response_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored input items as OpenAI's item resources (``GET /v1/responses/{id}/input_items``), each with a stable id."""
    out = []
    for i, item in enumerate(items):
        kind, ref = item.get("type", "message"), f"{response_id.removeprefix('resp_')}_{i}"
        if kind == "message":
            content = item.get("content")
            texts = [content] if isinstance(content, str) else [p.get("text", "") for p in content or []
                                                                  if isinstance(p, Mapping)]
            role = item.get("role", "user")
            part_type = "output_text" if role == "assistant" else "input_text"
            extra: dict[str, Any] = {"annotations": [], "logprobs": []} if role == "assistant" else {}
            parts = [{"type": part_type, "text": t, **extra} for t in texts]
            out.append({"id": f"msg_{ref}", "type": "message", "role": role, "status": "completed", "content": parts})
        elif kind == "function_call":
            out.append({"id": f"fc_{ref}", "type": "function_call", "status": "completed", "call_id": item["call_id"],
                        "name": item["name"], "arguments": item["arguments"]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            out.append({"id": f"fco_{ref}", "type": "function_call_output", "status": "completed",
                        "call_id": item["call_id"], "output": text})
    return out


def answer_messages(text: str, tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answer as chat messages (for the stored conversation)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [{"id": c["call_id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in tool_calls]
    return [message]


def arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
