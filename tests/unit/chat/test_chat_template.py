"""Chat templates run in a sandbox that refuses, rather than blanks out, any reach for Python internals."""

from __future__ import annotations

import datetime

import pytest

from inhouse.chat.template import ChatTemplate
from inhouse.errors import InvalidModelFile, InvalidRequest

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 你好"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Météo",
                                           "parameters": {"type": "object"}}}]


def test_chatml_default() -> None:
    t = ChatTemplate.chatml()
    assert t.render(MSGS) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n"
                              "<|im_start|>assistant\n")
    assert t.render(MSGS, add_generation_prompt=False).endswith("Hi 你好<|im_end|>\n")
    assert t.eos_token == "<|im_end|>"


def test_chatml_with_tools_and_history() -> None:
    t = ChatTemplate.chatml()
    prompt = t.render(MSGS, tools=TOOLS)
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert '{"type": "function", "function": {"name": "get_weather", "description": "Météo"' in prompt
    assert prompt.count("<|im_start|>system") == 1
    history = [
        {"role": "user", "content": "w?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    out = t.render(history)
    call = '<tool_call>\n{"name": "w", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert "<|im_start|>assistant\n" + call in out
    assert "<tool_response>\nsunny\n</tool_response>" in out


def test_special_tokens_and_helpers() -> None:
    t = ChatTemplate("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}|{{ strftime_now('%Y') }}|"
                     "{{ {'k': 'ü<>&'} | tojson }}|{{ [1, 2] | tojson(indent=1) }}",
                     bos_token="<s>", eos_token="</s>")
    year = str(datetime.datetime.now().year)
    assert t.render([{"role": "user", "content": "x"}]) == f'<s>x</s>|{year}|{{"k": "ü<>&"}}|[\n 1,\n 2\n]'


def test_trim_and_lstrip_blocks() -> None:
    t = ChatTemplate("{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n"
                     "{% endfor %}")
    assert t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a\nb\n"


def test_loop_controls_and_missing_keys() -> None:
    t = ChatTemplate("{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                     "{{ m.content }}{% if m.tool_calls %}!{% endif %}{% endfor %}")
    assert t.render(MSGS) == "Hi 你好"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__ }}",
        "{% if ''.__class__ %}yes{% endif %}",
        "{{ messages.__class__.__base__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ raise_exception.__globals__ }}",
        "{{ messages[0]['content'].__len__() }}",
        "{% set x = [] %}{{ x.append(1) }}",
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ (messages | first).items.__self__ }}",
        "{{ range(10**9) | list }}",
        "{{ 1 / 0 }}",
        "{{ messages[0].content + 1 }}",
    ],
)
def test_unsafe_or_failing_templates_are_refused(source: str) -> None:
    t = ChatTemplate(source)
    with pytest.raises(InvalidModelFile, match="chat template refused"):
        t.render([{"role": "user", "content": "x"}])


def test_syntax_errors_are_refused_at_construction() -> None:
    with pytest.raises(InvalidModelFile, match="chat template refused"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(InvalidModelFile, match="chat template refused"):
        ChatTemplate("{{ }}")


def test_raise_exception_is_a_request_error() -> None:
    t = ChatTemplate("{% if messages[0].role != 'user' %}"
                     "{{ raise_exception('Conversation must start with user') }}{% endif %}ok")
    assert t.render([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(InvalidRequest, match="Conversation must start with user") as info:
        t.render([{"role": "assistant", "content": "x"}])
    assert not isinstance(info.value, InvalidModelFile) and info.value.param == "messages"


def test_compiled_once_and_inputs_not_mutated() -> None:
    t = ChatTemplate.chatml()
    compiled = t._template
    msgs = [dict(m) for m in MSGS]
    t.render(msgs, tools=TOOLS)
    t.render(msgs)
    assert t._template is compiled and msgs == MSGS
