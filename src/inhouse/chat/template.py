"""Chat templates, rendered the way Hugging Face renders them — inside jinja2's immutable sandbox.

A chat template is code shipped inside a model file. It runs in ``ImmutableSandboxedEnvironment`` (no
attribute starting with ``_``, no mutating methods of lists and dicts, ranges capped), and an attempt to
reach Python internals (``''.__class__.__mro__…``) *raises* instead of rendering the empty string that
jinja2's sandbox returns by default: a template probing the sandbox is refused, not half-run.

Errors: a template that does not compile or fails while rendering → ``InvalidModelFile`` ("chat template
refused: …"); a template that calls ``raise_exception(msg)`` is judging the *messages* (e.g. roles must
alternate) → ``InvalidRequest`` with its message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from inhouse.errors import InvalidModelFile, InvalidRequest

# ChatML, the format of most small instruct models (SmolLM2, Qwen): used when a GGUF file carries no
# template. With tools it follows Qwen2.5's Hermes-style prompt, which ``tool_calls.parse_tool_calls``
# understands: calls come back as <tool_call>{"name": …, "arguments": …}</tool_call>.
CHATML_TEMPLATE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages and messages[0].role == 'system' %}
        {{- messages[0].content }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' ~ (tool | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments ' }}
    {{- 'within <tool_call></tool_call> XML tags:\n<tool_call>\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if tools and loop.first and message.role == 'system' %}
    {%- elif message.role == 'assistant' and message.tool_calls %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}
            {{- '\n' ~ message.content }}
        {%- endif %}
        {%- for call in message.tool_calls %}
            {{- '\n<tool_call>\n{"name": ' ~ (call.function.name | tojson) ~ ', "arguments": ' }}
            {{- (call.function.arguments | tojson) ~ '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {{- '<|im_start|>user\n<tool_response>\n' ~ message.content ~ '\n</tool_response><|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>' ~ message.role ~ '\n' ~ message.content ~ '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


class _TemplateRaised(Exception):
    """``raise_exception`` called by a template: the messages, not the template, are at fault."""


def _raise_exception(message: Any) -> NoReturn:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    # Like transformers: no HTML escaping (jinja2's own tojson escapes <, >, &), non-ASCII kept as is.
    seps = tuple(separators) if separators else None
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=seps,  # type: ignore[arg-type]
                      sort_keys=sort_keys)


def _build_environment() -> Any:
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class StrictSandbox(ImmutableSandboxedEnvironment):
        def unsafe_undefined(self, obj: Any, attribute: Any) -> Any:
            # The default returns an Undefined that prints as "" and is falsy: refuse outright instead.
            raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is unsafe")

    env = StrictSandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"],
                        autoescape=False, keep_trailing_newline=False)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A model's chat template, compiled once. ``render`` turns messages (+ tools) into the prompt."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        from jinja2.exceptions import TemplateError

        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _build_environment().from_string(source)
        except TemplateError as exc:
            raise InvalidModelFile(f"chat template refused: {exc}") from None
        except (RecursionError, MemoryError, ValueError, TypeError) as exc:
            raise InvalidModelFile(f"chat template refused: {type(exc).__name__}: {exc}") from None

    @classmethod
    def chatml(cls, *, bos_token: str = "", eos_token: str = "<|im_end|>") -> ChatTemplate:
        """ChatML (``<|im_start|>role\\ncontent<|im_end|>``): the default for a model without a template.
        Tools, when given, are offered in Qwen's Hermes format."""
        return cls(CHATML_TEMPLATE, bos_token=bos_token, eos_token=eos_token)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        context = {
            **extra,
            "messages": [dict(m) for m in messages],
            "tools": [dict(t) for t in tools] if tools else None,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        try:
            return str(self._template.render(**context))
        except _TemplateRaised as exc:
            raise InvalidRequest(f"The model's chat template rejected the messages: {exc}",
                                 param="messages") from None
        except Exception as exc:  # any failure of untrusted template code is the template's fault
            raise InvalidModelFile(f"chat template refused: {type(exc).__name__}: {exc}") from None
