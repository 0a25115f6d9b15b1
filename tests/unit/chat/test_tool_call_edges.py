"""Tool-call parsing at its edges: JSON answers that are not calls, markup inside arguments, cut answers."""

from __future__ import annotations

import json

from inhouse.chat.output import CompletionResult, OutputAccumulator, PreparedGeneration
from inhouse.chat.tool_calls import drop_cut_call, parse_tool_calls
from inhouse.engine.params import Delta, FinishReason, GenerationRequest, SamplingParams

OFFERED = frozenset({"write_file", "f"})


# -- a JSON answer with a "name" is an answer (bug: it became a call of an unoffered function) -------------------


def test_bare_json_with_other_keys_is_an_answer() -> None:
    for text in ('{"name": "Alice", "role": "admin"}', '{"name": "write_file", "age": 3}',
                 '{"name": "write_file"}', '{"name": "write_file", "arguments": {}, "extra": 1}'):
        assert parse_tool_calls(text, tool_names=OFFERED) == (text, []), text
        assert parse_tool_calls(text) == (text, []), text  # the shape alone already rules them out


def test_bare_json_naming_an_unoffered_function_is_an_answer() -> None:
    text = '{"name": "Alice", "arguments": {}}'
    assert parse_tool_calls(text, tool_names=OFFERED) == (text, [])
    text = '[{"name": "f", "arguments": {}}, {"name": "Alice", "arguments": {}}]'
    assert parse_tool_calls(text, tool_names=OFFERED) == (text, [])


def test_bare_call_of_an_offered_function_is_read() -> None:
    content, calls = parse_tool_calls('```json\n{"name": "f", "parameters": {"a": 1}}\n```', tool_names=OFFERED)
    assert content == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {"a": 1})]


def test_tagged_call_of_an_unoffered_function_is_still_a_call() -> None:
    # The markup says a call was meant: the caller's tool loop reports the unknown name back to the model.
    content, calls = parse_tool_calls('Hm.\n<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',
                                      tool_names=OFFERED)
    assert content == "Hm." and [c.name for c in calls] == ["rm_rf"]


# -- "</tool_call>" inside an argument (bug: the block ended there and the call leaked into the content) ----------


def test_closing_tag_inside_an_argument() -> None:
    text = '<tool_call>\n{"name": "write_file", "arguments": {"text": "close with </tool_call>"}}\n</tool_call>'
    content, calls = parse_tool_calls(text, tool_names=OFFERED)
    assert content == "" and json.loads(calls[0].arguments) == {"text": "close with </tool_call>"}
    # Cut before its own closing tag, and followed by another call.
    content, calls = parse_tool_calls('Ok.\n' + text.removesuffix("\n</tool_call>"))
    assert content == "Ok." and len(calls) == 1
    content, calls = parse_tool_calls(text + '\n<tool_call>{"name": "f", "arguments": {"t": "<tool_call>"}}'
                                      + "</tool_call>\nDone.")
    assert [c.name for c in calls] == ["write_file", "f"] and content == "Done."
    assert json.loads(calls[1].arguments) == {"t": "<tool_call>"}


def test_text_after_the_json_in_a_block_stays_content() -> None:
    text = '<tool_call>{"name": "f", "arguments": {}} and more</tool_call>'
    assert parse_tool_calls(text) == (text, [])


def test_drop_cut_call() -> None:
    assert drop_cut_call('Sure.\n<tool_call>\n{"name": "f", "ar') == "Sure."
    assert drop_cut_call("<tool_call>") == ""
    kept = 'a <tool_call>{"name": "x"}</tool_call>'
    assert drop_cut_call(kept) == kept and drop_cut_call("plain") == "plain"
    # Cut inside an argument that itself holds the closing tag: still half a call.
    assert drop_cut_call('Ok <tool_call>\n{"name": "w", "arguments": {"text": "close with </tool_call> and') == "Ok"


# -- the finish reason of a cut answer (bug: "length" became "tool_calls", half a call stayed in the content) ------


def _result(text: str, reason: FinishReason, tool_names: frozenset[str] | None = OFFERED) -> CompletionResult:
    req = GenerationRequest("req_1", [1, 2], SamplingParams())
    prepared = PreparedGeneration("chat", "m", engine=None, requests=[req],  # type: ignore[arg-type]
                                  parse_tools=True, tool_names=tool_names)
    acc = OutputAccumulator(prepared)
    acc.add(Delta("req_1", text=text, token_ids=[5] * len(text), finish_reason=reason))
    return acc.result()


CALL = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'


def test_length_after_a_call_stays_length_and_drops_the_cut_call() -> None:
    r = _result(CALL + '\n<tool_call>\n{"name": "f", "ar', "length")
    assert r.finish_reason == "length" and [c.name for c in r.tool_calls] == ["f"]
    assert r.text == ""
    r = _result('I will call.\n<tool_call>\n{"name": "f", "ar', "length")
    assert r.finish_reason == "length" and r.text == "I will call." and not r.tool_calls


def test_stop_with_calls_is_tool_calls_and_other_reasons_are_kept() -> None:
    assert _result(CALL, "stop").finish_reason == "tool_calls"
    assert _result(CALL, "abort").finish_reason == "abort"
    r = _result('{"name": "Alice", "arguments": {}}', "stop")
    assert r.finish_reason == "stop" and not r.tool_calls


# -- a bare call cut by max_tokens (bug: Qwen's untagged '{"name": "get_weather' came back as the answer) ---------


def test_a_cut_bare_call_of_an_offered_tool_is_dropped() -> None:
    for text in ('{"name": "write_file", "arguments": {"text": "a', '{"name": "write_f', '{"name": "', '{"na', "{",
                 '  {"name":"write_file",', '```json\n{"name": "write_file", "arg',
                 '[{"name": "f", "arguments": {}}, {'):
        r = _result(text, "length")
        assert (r.text, r.tool_calls, r.finish_reason) == ("", [], "length"), text


def test_cut_json_that_is_no_call_stays_the_answer() -> None:
    for text in ('{"name": "Alice", "age": 3', '{"name": "Ali', '{"city": "Oslo", "na', '[1, 2,', "```python\nx = {",
                 'Sure: {"name": "write_file", "arg', '{"name": "write_file"}'):  # the last is whole JSON, no call
        assert _result(text, "length").text == text, text
    assert _result('{"name": "write_file", "arg', "stop").text == '{"name": "write_file", "arg'  # not cut


def test_a_forced_call_cut_by_max_tokens_is_neither_answer_nor_call() -> None:
    req = GenerationRequest("req_1", [1, 2], SamplingParams())
    prepared = PreparedGeneration("chat", "m", engine=None, requests=[req],  # type: ignore[arg-type]
                                  parse_tools=True, tool_names=OFFERED, forced_call=True)
    for text in ('{"name": "f", "arguments": {"a": "', '{', '{"name": "f", "arguments": {"a": 1}} x'):
        acc = OutputAccumulator(prepared)
        acc.add(Delta("req_1", text=text, token_ids=[5] * 6, finish_reason="length"))
        r = acc.result()
        assert (r.text, r.tool_calls, r.finish_reason, r.usage.completion_tokens) == ("", [], "length", 6), text
