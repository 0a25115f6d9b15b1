"""Tool calls out of generated text, in the Hermes/Qwen format::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Oslo"}}
    </tool_call>

Several calls may follow one another; a last ``<tool_call>`` cut off before its closing tag (the model hit
its stop token or max_tokens right after the JSON) is still read. Small models given tools sometimes answer
with the bare JSON object (or a ```json fence around it): that is read too, when the whole answer is just
that. Anything that does not parse stays in the content, untouched: a wrong guess must never eat text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


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


def _call_from(obj: Any) -> ToolCall | None:
    """A ToolCall from a decoded {"name": …, "arguments": {…}} object; None if it is not one."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
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


def _decode(text: str) -> Any:
    """The one JSON value that ``text`` is (surrounding whitespace allowed); None if it is not one."""
    text = text.strip()
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if not text[end:].strip() else None


def _calls_in(block: str) -> list[ToolCall] | None:
    value = _decode(block)
    items = value if isinstance(value, list) else [value]
    calls = [_call_from(v) for v in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def parse_tool_calls(text: str, *, allow_bare: bool = True) -> tuple[str, list[ToolCall]]:
    """Split generated ``text`` into (content, tool calls). Content keeps everything that was not a
    well-formed call, stripped of surrounding whitespace when calls were found."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        found = _calls_in(m.group(1))
        if found is None:
            continue  # left in the content, as generated
        kept.append(text[pos : m.start()])
        calls.extend(found)
        pos = m.end()
    rest = text[pos:]
    start = rest.rfind(_OPEN)
    if start >= 0 and _CLOSE not in rest[start:]:
        found = _calls_in(rest[start + len(_OPEN) :])
        if found is not None:
            kept.append(rest[:start])
            calls.extend(found)
            rest = ""
    kept.append(rest)
    if calls:
        return "".join(kept).strip(), calls

    if allow_bare:
        stripped = text.strip()
        fenced = _FENCE.match(stripped)
        candidate = fenced.group(1) if fenced else stripped
        if candidate.startswith(("{", "[")):
            found = _calls_in(candidate)
            if found:
                return "", found
    return text, []
