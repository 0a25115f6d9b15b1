"""Tool calls out of generated text, in the Hermes/Qwen format::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Oslo"}}
    </tool_call>

Several calls may follow one another; a last ``<tool_call>`` cut off before its closing tag (the model hit
its stop token or max_tokens right after the JSON) is still read. The JSON is read by a JSON decoder, not
up to the next closing tag: an argument may itself contain the text ``</tool_call>``. Small models given
tools sometimes answer with the bare JSON object (or a ```json fence around it): that is read too, when the
whole answer is just that, its keys are only name and arguments (or parameters), and it names an offered
tool. Anything that does not parse stays in the content, untouched: a wrong guess must never eat text. The one
exception is an answer max_tokens cut inside a call, tagged or bare and naming an offered tool (``drop_cut_call``):
half a call is neither a call nor an answer.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_FENCE_OPEN = re.compile(r"```(?:json)?\s*")
_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()
# The keys a bare JSON answer may have to be read as a call: anything else (a "role", an "age") is an answer.
_BARE_KEYS = ({"name", "arguments"}, {"name", "parameters"})


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as a string (what OpenAI clients expect)
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": self.type, "function": function}


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def _call_from(obj: Any, names: Collection[str] | None) -> ToolCall | None:
    """A ToolCall from a decoded {"name": …, "arguments": {…}} object; None if it is not one, or names a
    function not in ``names`` (None: any name)."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    if names is not None and name.strip() not in names:
        return None
    # "parameters" is what some fine-tunes write instead of "arguments".
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(new_call_id(), name.strip(), json.dumps(args, ensure_ascii=False))


def _calls_in(value: Any, names: Collection[str] | None, *, bare: bool = False) -> list[ToolCall] | None:
    """The calls a decoded value is (one object or a list of them); None unless every item is a call."""
    items = value if isinstance(value, list) else [value]
    if bare and not all(isinstance(v, dict) and set(v) in _BARE_KEYS for v in items):
        return None
    calls = [_call_from(v, names) for v in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def _skip_space(text: str, pos: int) -> int:
    m = _SPACE.match(text, pos)
    return m.end() if m else pos


def _block_at(text: str, start: int) -> tuple[list[ToolCall], int] | None:
    """The calls of the ``<tool_call>`` block at ``start`` and where it ends: one JSON value, then optional
    whitespace and the closing tag or the end of the text. None if it is not such a block."""
    pos = _skip_space(text, start + len(_OPEN))
    try:
        value, pos = _DECODER.raw_decode(text, pos)
    except (json.JSONDecodeError, RecursionError):
        return None
    pos = _skip_space(text, pos)
    if text.startswith(_CLOSE, pos):
        pos += len(_CLOSE)
    elif pos != len(text):
        return None
    calls = _calls_in(value, None)
    return None if calls is None else (calls, pos)


def parse_tool_calls(text: str, *, tool_names: Collection[str] | None = None,
                     allow_bare: bool = True) -> tuple[str, list[ToolCall]]:
    """Split generated ``text`` into (content, tool calls). Content keeps everything that was not a
    well-formed call, stripped of surrounding whitespace when calls were found.

    ``tool_names`` are the functions offered (None: any). A bare JSON answer is read as a call only when it
    names one of them: without the tags it is as likely an answer. A tagged call is read whatever its name: the
    markup says the model meant a call, and an agent loop answers an unknown name with an error the model can
    correct (apps/schedule does), where the same markup as content would reach the user."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    start = text.find(_OPEN)
    while start >= 0:
        block = _block_at(text, start)
        if block is None:  # left in the content, as generated
            start = text.find(_OPEN, start + len(_OPEN))
            continue
        found, end = block
        kept.append(text[pos:start])
        calls.extend(found)
        pos = end
        start = text.find(_OPEN, pos)
    kept.append(text[pos:])
    if calls:
        return "".join(kept).strip(), calls

    if allow_bare:
        stripped = text.strip()
        fenced = _FENCE.match(stripped)
        candidate = fenced.group(1) if fenced else stripped
        if candidate.startswith(("{", "[")):
            try:
                value, end = _DECODER.raw_decode(candidate)
            except (json.JSONDecodeError, RecursionError):
                return text, []
            bare = _calls_in(value, tool_names, bare=True) if not candidate[end:].strip() else None
            if bare is not None:
                return "", bare
    return text, []


def drop_cut_call(content: str, *, tool_names: Collection[str] | None = None) -> str:
    """``content`` (what ``parse_tool_calls`` left: complete calls are gone) without a last ``<tool_call>`` whose
    JSON max_tokens cut, or empty when the whole of it is a cut bare call (``is_cut_bare_call``): half a call is
    neither a call nor an answer. Told by the JSON decoder, as the parser does: a cut argument may itself hold the
    text ``</tool_call>``."""
    start = content.rfind(_OPEN)
    if start < 0:
        return "" if is_cut_bare_call(content, tool_names) else content
    try:
        _DECODER.raw_decode(content, _skip_space(content, start + len(_OPEN)))
    except (json.JSONDecodeError, RecursionError):
        return content[:start].rstrip()
    return content  # whole JSON that is not a call: text, as generated


def is_cut_bare_call(text: str, tool_names: Collection[str] | None = None) -> bool:
    """Whether ``text``, a whole answer that max_tokens cut, is the start of a bare JSON call (Qwen writes them
    without tags): unfinished JSON that begins ``{"name": "`` and an offered function's name, or a part of that
    (``{"na``, ``{"name": "get_w``), maybe in a ```json fence or a list. Unfinished JSON naming anything else is
    an answer: it stays. ``tool_names`` None: any name."""
    stripped = text.strip()
    fence = _FENCE_OPEN.match(stripped)
    candidate = stripped[fence.end():] if fence else stripped
    if not candidate.startswith(("{", "[")):
        return False
    try:
        _DECODER.raw_decode(candidate)
        return False  # whole JSON: parse_tool_calls already read it as a call or left it as an answer
    except (json.JSONDecodeError, RecursionError):
        pass
    pos = _skip_space(candidate, 1) if candidate.startswith("[") else 0
    for piece in ("{", '"name"', ":", '"'):
        pos = _skip_space(candidate, pos)
        rest = candidate[pos:]
        if piece.startswith(rest):  # the text ends here, within or before what a call writes next
            return True
        if not rest.startswith(piece):
            return False
        pos += len(piece)
    end = candidate.find('"', pos)
    name = candidate[pos:] if end < 0 else candidate[pos:end]
    if tool_names is None:
        return True
    return any(n.startswith(name) for n in tool_names) if end < 0 else name in tool_names
