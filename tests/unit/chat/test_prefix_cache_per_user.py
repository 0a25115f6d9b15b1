"""The prefix cache is per user: ``ChatService`` puts the caller's cache owner on every engine request (and in the
affinity key), and over HTTP a member who copies another user's prompt gets no cached tokens from it (the
cached-token count, the hit metric and the time to first token would otherwise confirm a guess token by token)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.chat.affinity import cache_owner_of, chat_affinity_key
from inhouse.testing.fakes import build_fake_chat, build_fake_engine
from inhouse.types import Actor

MODEL = "fake-model"
SYSTEM = {"role": "system", "content": "Answer only from the context passages below and cite them as [1], [2]."}


def _user_turn(guess: str) -> dict[str, str]:
    return {"role": "user", "content": f"Context passages:\n\n[1] Dingo plan\n{guess}\n\nWhat is the target?"}


def test_the_owner_is_the_user_else_the_key() -> None:
    assert cache_owner_of(Actor(key_id="key_a", name="alice", user_id="usr_1")) == "user:usr_1"
    assert cache_owner_of(Actor(key_id="key_b", name="alice-laptop", user_id="usr_1")) == "user:usr_1"
    assert cache_owner_of(Actor(key_id="key_c", name="ci")) == "key:key_c"


def test_every_engine_request_carries_the_owner_and_the_affinity_key_includes_it() -> None:
    engine = build_fake_engine()
    try:
        chat = build_fake_chat(engine)
        messages = [SYSTEM, _user_turn("The target is Kestrel Labs.")]
        alice = chat.prepare_chat({"model": MODEL, "messages": messages, "n": 2}, cache_owner="user:alice")
        assert [r.cache_owner for r in alice.requests] == ["user:alice"] * 2
        assert alice.requests[0].affinity_key == chat_affinity_key(MODEL, messages, owner="user:alice")
        bob = chat.prepare_chat({"model": MODEL, "messages": messages}, cache_owner="user:bob")
        assert bob.requests[0].affinity_key != alice.requests[0].affinity_key
        completion = chat.prepare_completion({"model": MODEL, "prompt": "Once upon a time"}, cache_owner="key:k")
        assert completion.requests[0].cache_owner == "key:k"
        assert chat.prepare_chat({"model": MODEL, "messages": messages}).requests[0].cache_owner is None
    finally:
        engine.close()


def _client(services: Any, name: str) -> TestClient:
    user = services.directory.create_user(name)
    key = services.keys.create_key(name, user_id=user.id)[1]
    return TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"})


def _ask(client: TestClient, guess: str) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 1, "temperature": 0,
                                                  "messages": [SYSTEM, _user_turn(guess)]})
    assert r.status_code == 200, r.text
    usage: dict[str, Any] = r.json()["usage"]
    return usage


def _cached(usage: dict[str, Any]) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))


def test_a_member_copying_another_users_prompt_gets_no_cached_tokens(make_services: Any) -> None:
    services = make_services()
    secret = "The Dingo acquisition target is Kestrel Labs, offer 55 million CNY, signing on 14 May."
    with _client(services, "alice") as alice, _client(services, "bob") as bob:
        assert _cached(_ask(alice, secret)) == 0
        hits = services.registry.get_engine(MODEL).stats().prefix_cache_hit_tokens
        usage = _ask(bob, secret)  # bob's exact copy of alice's prompt
        assert _cached(usage) == 0
        assert services.registry.get_engine(MODEL).stats().prefix_cache_hit_tokens == hits, "the metric moved too"
        again = _ask(alice, secret)  # alice's own next request still reuses her prefix
        assert _cached(again) == again["prompt_tokens"] - 1


def test_the_question_rewrites_use_the_askers_prefix_cache_only() -> None:
    """The translation and code sketch of a question (``kb/rewrite.py``) run before retrieval for a grounded chat, a
    support answer or ``inhouse ask``: owner-less, one user's question fed another's time to first token."""
    import asyncio

    from inhouse.kb.translate import QueryTranslator

    engine = build_fake_engine()
    try:
        chat = build_fake_chat(engine)
        owners: list[str | None] = []
        prepare = chat.prepare_chat

        def spy(body: dict[str, Any], **kwargs: Any) -> Any:
            prepared = prepare(body, **kwargs)
            owners.extend(r.cache_owner for r in prepared.requests)
            return prepared

        chat.prepare_chat = spy  # type: ignore[method-assign]
        translator = QueryTranslator(chat)
        secret = "Is the Dingo acquisition of Kestrel Labs for 55 million CNY still signing on 14 May"
        asyncio.run(translator.translate(secret + ", alice asks?", model=MODEL, cache_owner="user:alice"))
        before = engine.stats().prefix_cache_hit_tokens
        asyncio.run(translator.translate(secret + ", bob guesses?", model=MODEL, cache_owner="user:bob"))
        assert engine.stats().prefix_cache_hit_tokens == before and owners == ["user:alice", "user:bob"]
    finally:
        engine.close()
