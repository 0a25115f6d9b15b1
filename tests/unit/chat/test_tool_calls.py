"""Hermes/Qwen tool-call parsing: calls out, everything else left in the content."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.chat.tool_calls import ToolCall, parse_tool_calls

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'


def test_one_call() -> None:
    content, calls = parse_tool_calls(CALL)
    assert content == ""
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert call.id.startswith("call_") and len(call.id) > 10 and call.type == "function"
    assert call.to_dict() == {"id": call.id, "type": "function",
                              "function": {"name": "get_weather", "arguments": call.arguments}}


def test_several_calls_with_text_around() -> None:
    text = ("Let me check.\n" + CALL + "\n"
            + '<tool_call>{"name": "get_time", "arguments": {"tz": "Europe/Oslo"}}</tool_call>\nDone.')
    content, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert content.startswith("Let me check.") and content.endswith("Done.") and "tool_call" not in content
    assert len({c.id for c in calls}) == 2


def test_missing_closing_tag_at_end() -> None:
    content, calls = parse_tool_calls('Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n')
    assert content == "Sure." and [c.name for c in calls] == ["f"]
    content, calls = parse_tool_calls(CALL + '\n<tool_call>\n{"name": "g", "arguments": {}}')
    assert [c.name for c in calls] == ["get_weather", "g"] and content == ""


def test_invalid_json_stays_content() -> None:
    bad = '<tool_call>\n{"name": "f", "arguments": {"x": }\n</tool_call>'
    assert parse_tool_calls(bad) == (bad, [])
    content, calls = parse_tool_calls(bad + "\n" + CALL)
    assert [c.name for c in calls] == ["get_weather"] and content == bad
    cut = '<tool_call>\n{"name": "f", "argu'
    assert parse_tool_calls(cut) == (cut, [])


def test_not_a_call_stays_content() -> None:
    for inner in ('{"arguments": {}}', '{"name": "", "arguments": {}}', '{"name": "f", "arguments": [1]}',
                  '"just a string"', '{"name": "f", "arguments": "not json"}', '{"name": 3}'):
        text = f"<tool_call>{inner}</tool_call>"
        assert parse_tool_calls(text) == (text, []), inner


def test_arguments_forms() -> None:
    _, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>')
    assert json.loads(calls[0].arguments) == {"a": 1}
    _, calls = parse_tool_calls('<tool_call>{"name": "f"}</tool_call>')
    assert calls[0].arguments == "{}"
    _, calls = parse_tool_calls('<tool_call>{"name": "f", "parameters": {"q": "北京"}}</tool_call>')
    assert calls[0].arguments == '{"q": "北京"}'  # non-ASCII kept readable
    _, calls = parse_tool_calls('<tool_call>[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]'
                                "</tool_call>")
    assert [c.name for c in calls] == ["f", "g"]


def test_bare_json_answer() -> None:
    content, calls = parse_tool_calls('  {"name": "get_weather", "arguments": {"city": "Oslo"}}\n')
    assert content == "" and [c.name for c in calls] == ["get_weather"]
    content, calls = parse_tool_calls('```json\n{"name": "f", "arguments": {}}\n```')
    assert content == "" and [c.name for c in calls] == ["f"]
    text = '{"name": "f", "arguments": {}}'
    assert parse_tool_calls(text, allow_bare=False) == (text, [])
    # JSON that is not a call, or a call inside prose, is an answer.
    for text in ('{"city": "Oslo"}', 'Here: {"name": "f", "arguments": {}}', "[1, 2]"):
        assert parse_tool_calls(text) == (text, [])


def test_plain_text_untouched() -> None:
    assert parse_tool_calls("  Hello\n") == ("  Hello\n", [])
    assert parse_tool_calls("") == ("", [])


def test_tool_call_is_a_value() -> None:
    assert ToolCall("call_1", "f", "{}") == ToolCall("call_1", "f", "{}")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('<>/tool_cal{}[]":, \nnameargumentsxy01')), max_size=120))
def test_never_raises(text: str) -> None:
    content, calls = parse_tool_calls(text)
    assert isinstance(content, str)
    for c in calls:
        assert isinstance(json.loads(c.arguments), dict)
