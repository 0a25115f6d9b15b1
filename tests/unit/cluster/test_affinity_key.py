"""The affinity key of chat and completion requests (``chat/affinity.py``), and that ``ChatService`` sets it."""

from __future__ import annotations

from inhouse.chat.affinity import COMPLETION_PREFIX_TOKENS, chat_affinity_key, completion_affinity_key
from inhouse.testing.fakes import build_fake_chat, build_fake_engine

SYSTEM = {"role": "system", "content": "Be brief."}
FIRST = {"role": "user", "content": "What is our leave policy?"}


def test_later_turns_keep_the_key_and_the_start_of_the_conversation_changes_it() -> None:
    key = chat_affinity_key("m", [SYSTEM, FIRST])
    longer = [SYSTEM, FIRST, {"role": "assistant", "content": "20 days."}, {"role": "user", "content": "And sick?"}]
    assert chat_affinity_key("m", longer) == key
    assert chat_affinity_key("other", [SYSTEM, FIRST]) != key
    assert chat_affinity_key("m", [FIRST]) != key
    assert chat_affinity_key("m", [SYSTEM, {"role": "user", "content": "Another question"}]) != key


def test_a_completion_key_is_its_first_prompt_tokens() -> None:
    head = list(range(COMPLETION_PREFIX_TOKENS))
    assert completion_affinity_key("m", [*head, 1, 2]) == completion_affinity_key("m", [*head, 3])
    assert completion_affinity_key("m", [9, *head]) != completion_affinity_key("m", head)


def test_chat_service_puts_the_key_on_every_engine_request() -> None:
    engine = build_fake_engine()
    try:
        chat = build_fake_chat(engine)
        prepared = chat.prepare_chat({"model": "fake-model", "messages": [SYSTEM, FIRST], "n": 2})
        assert [r.affinity_key for r in prepared.requests] == [chat_affinity_key("fake-model", [SYSTEM, FIRST])] * 2
        completion = chat.prepare_completion({"model": "fake-model", "prompt": "Once upon a time"})
        assert completion.requests[0].affinity_key == completion_affinity_key(
            "fake-model", completion.requests[0].prompt_tokens)
    finally:
        engine.close()
