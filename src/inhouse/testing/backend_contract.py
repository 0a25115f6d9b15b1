"""The conformance suite every ``Backend`` passes: the fake in the unit tests, llama.cpp in integration.

Subclass ``BackendContract`` in a ``Test*`` class and override ``make_backend``. The tests drive
``execute`` themselves, exactly as the engine's step thread does: ``start_request`` → ``execute``
(prompt, then one token per step) → ``end_request``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence

import pytest

from inhouse.engine.params import SamplingParams, TokenLogprob
from inhouse.engine.protocol import Backend, BatchItem, KvOp, StepPlan
from inhouse.errors import EngineFailure, InvalidRequest

GREEDY = SamplingParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)


def _text(backend: Backend, tokens: Sequence[int]) -> str:
    return b"".join(backend.token_piece(t) for t in tokens).decode("utf-8")


def clear_slot(backend: Backend, slot: int) -> None:
    backend.execute(StepPlan(kv_ops=[KvOp("rm", slot, p0=0)]))


def feed(
    backend: Backend, rid: str, slot: int, tokens: Sequence[int], pos0: int, *, sample: bool = True
) -> int | None:
    """Decode ``tokens`` for one request; return the sampled token (or None when ``sample`` is false)."""
    out = backend.execute(StepPlan(items=[BatchItem(rid, slot, tuple(tokens), pos0, sample)]))
    return out.get(rid)


def feed_fresh(backend: Backend, rid: str, slot: int, tokens: Sequence[int], pos0: int) -> int | None:
    """``feed`` with a new greedy sampler, so the sampled token depends on the KV cache alone."""
    backend.start_request(rid, GREEDY)
    try:
        return feed(backend, rid, slot, tokens, pos0)
    finally:
        backend.end_request(rid)


def generate(
    backend: Backend,
    prompt: Sequence[int],
    params: SamplingParams = GREEDY,
    *,
    slot: int = 0,
    max_new: int = 8,
    rid: str = "req_contract",
    picks: list[TokenLogprob] | None = None,
) -> list[int]:
    """Generate alone in ``slot`` (cleared first) until EOG or ``max_new`` tokens; EOG is not returned.
    ``picks``, when given, receives the log-probability entry of every sampled token, EOG included
    (``params.logprobs`` must be set)."""

    def step(tokens: Sequence[int], pos0: int) -> int | None:
        token = feed(backend, rid, slot, tokens, pos0)
        if picks is not None and token is not None:
            sampled = backend.logprobs()[rid].sampled
            assert sampled is not None and sampled.token == token
            picks.append(sampled)
        return token

    clear_slot(backend, slot)
    backend.start_request(rid, params)
    try:
        out: list[int] = []
        token = step(prompt, 0)
        pos = len(prompt)
        while token is not None and not backend.is_eog(token) and len(out) < max_new:
            out.append(token)
            if len(out) == max_new:
                break
            token = step([token], pos)
            pos += 1
        return out
    finally:
        backend.end_request(rid)


def margin(pick: TokenLogprob) -> float:
    """By how many nats the model preferred the picked token to its runner-up, before any grammar (negative when a
    grammar or a bias overruled it). Needs ``pick.top`` from ``logprobs=2``."""
    return pick.logprob - max(v for t, _, v in pick.top if t != pick.token)


def generate_together(
    backend: Backend, prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams], *, max_new: int = 8
) -> list[list[int]]:
    """Generate for several requests in slots 0..n-1, all of them in the same batch at every step."""
    rids = [f"req_together_{i}" for i in range(len(prompts))]
    for slot, (rid, p) in enumerate(zip(rids, params, strict=True)):
        clear_slot(backend, slot)
        backend.start_request(rid, p)
    try:
        items = [BatchItem(rid, slot, tuple(pr), 0, True)
                 for slot, (rid, pr) in enumerate(zip(rids, prompts, strict=True))]
        outs: list[list[int]] = [[] for _ in prompts]
        pos = [len(pr) for pr in prompts]
        for _ in range(max_new):
            sampled = backend.execute(StepPlan(items=items))
            assert set(sampled) == set(rids)
            items = []
            for slot, rid in enumerate(rids):
                outs[slot].append(sampled[rid])
                items.append(BatchItem(rid, slot, (sampled[rid],), pos[slot], True))
                pos[slot] += 1
        return outs
    finally:
        for rid in rids:
            backend.end_request(rid)


class BackendContract:
    """Inherit and override ``make_backend``. Class attributes tune prompts per backend."""

    prompt_a = "The capital of France is"
    prompt_b = "One, two, three, four,"
    json_prompt = 'Reply with a JSON object with one key "ok" set to true.'
    # Earlier exchanges that answered the same request with a short object, so that the model closes its object by
    # itself whatever CPU computes it. Asked cold, SmolLM2-135M opened a second key by a margin of 0.1 nats on an
    # AVX2 CPU and wrote prose until the bound; after two examples it copies one, each token by 1.5 nats or more.
    json_history: tuple[tuple[str, str], ...] = ((json_prompt, '{"ok": true}'),) * 2
    max_json_tokens = 64
    # A greedy decision closer than this could go the other way on another CPU: logits from different kernels
    # (batched vs one token at a time) differ by up to 0.12 nats on SmolLM2-135M, and SIMD widths differ the same way.
    min_json_margin = 1.0

    def make_backend(self) -> Backend:
        raise NotImplementedError

    def chat(self, backend: Backend, text: str, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Turn a user message, after earlier ``(user, assistant)`` exchanges, into prompt tokens; backends with a
        chat format override this."""
        return backend.tokenize("".join(f"{user}\n{assistant}\n" for user, assistant in history) + text)

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        b = self.make_backend()
        try:
            yield b
        finally:
            b.close()

    # -- vocabulary ----------------------------------------------------------------------------------

    def test_tokenize_round_trip(self, backend: Backend) -> None:
        for text in ["Hello, world!", " Ünïcödé ✓ 日本語 and emoji 🙂", "word " * 700]:
            tokens = backend.tokenize(text, add_special=False)
            assert tokens
            assert b"".join(backend.token_piece(t) for t in tokens).decode("utf-8") == text

    def test_tokenize_special_adds_tokens_only_at_the_edges(self, backend: Backend) -> None:
        plain = backend.tokenize("Hello", add_special=False)
        special = backend.tokenize("Hello", add_special=True)
        assert len(special) >= len(plain)
        assert any(special[i : i + len(plain)] == plain for i in range(len(special) - len(plain) + 1))

    # -- batching and sampling -----------------------------------------------------------------------

    def test_greedy_is_deterministic_across_runs_and_slots(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_a)
        first = generate(backend, prompt, slot=0)
        assert first
        assert generate(backend, prompt, slot=0) == first
        assert generate(backend, prompt, slot=backend.n_slots - 1) == first

    def test_sequences_in_one_batch_sample_independently(self, backend: Backend) -> None:
        pa, pb = self.chat(backend, self.prompt_a), self.chat(backend, self.prompt_b)
        alone_a = generate(backend, pa, max_new=6)
        alone_b = generate(backend, pb, max_new=6)
        together = generate_together(backend, [pa, pb], [GREEDY, GREEDY], max_new=6)
        # EOG may come earlier than max_new when alone; compare the common part.
        assert together[0][: len(alone_a)] == alone_a
        assert together[1][: len(alone_b)] == alone_b

    def test_each_request_uses_its_own_sampler(self, backend: Backend) -> None:
        pa, pb = self.chat(backend, self.prompt_a), self.chat(backend, self.prompt_b)
        forced = backend.tokenize(" banana", add_special=False)[0]
        alone_b = generate(backend, pb, max_new=3)
        biased = dataclasses.replace(GREEDY, logit_bias=((forced, 100.0),))
        together = generate_together(backend, [pa, pb], [biased, GREEDY], max_new=3)
        assert together[0] == [forced] * 3
        assert together[1][: len(alone_b)] == alone_b

    def test_sample_false_returns_nothing(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_a)
        clear_slot(backend, 0)
        backend.start_request("req_nosample", GREEDY)
        try:
            assert feed(backend, "req_nosample", 0, prompt[:-1], 0, sample=False) is None
            token = feed(backend, "req_nosample", 0, prompt[-1:], len(prompt) - 1)
        finally:
            backend.end_request("req_nosample")
        assert token == generate(backend, prompt, max_new=1)[0]

    def test_seed_makes_sampling_reproducible(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_b)
        params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234)
        first = generate(backend, prompt, params, slot=0, max_new=12)
        assert generate(backend, prompt, params, slot=1, max_new=12) == first

    # -- KV cache ------------------------------------------------------------------------------------

    def test_rm_and_refeed_gives_the_same_token(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_a)
        expected = generate(backend, prompt, max_new=1)[0]
        clear_slot(backend, 0)
        feed_fresh(backend, "req_rm_1", 0, prompt, 0)
        cut = len(prompt) - 3
        backend.execute(StepPlan(kv_ops=[KvOp("rm", 0, p0=cut)]))
        assert feed_fresh(backend, "req_rm_2", 0, prompt[cut:], cut) == expected
        backend.execute(StepPlan(kv_ops=[KvOp("rm", 0, p0=0)]))  # clear the whole sequence
        assert feed_fresh(backend, "req_rm_3", 0, prompt, 0) == expected

    def test_copied_prefix_gives_the_same_token_as_from_scratch(self, backend: Backend) -> None:
        shared = self.chat(backend, self.prompt_a)
        other = backend.tokenize(" and the capital of Spain is", add_special=False)
        rest = backend.tokenize(" a city called", add_special=False)
        scratch = generate(backend, shared + rest, max_new=1, slot=2)[0]
        clear_slot(backend, 0)
        clear_slot(backend, 1)
        feed_fresh(backend, "req_src", 0, shared + other, 0)  # the source holds the prefix, then diverges
        backend.execute(StepPlan(kv_ops=[KvOp("cp", 1, p1=len(shared), src=0)]))
        assert feed_fresh(backend, "req_dst", 1, rest, len(shared)) == scratch
        # The source's prefix is intact after the copy and the destination's new tokens.
        backend.execute(StepPlan(kv_ops=[KvOp("rm", 0, p0=len(shared))]))
        assert feed_fresh(backend, "req_src_again", 0, rest, len(shared)) == scratch

    def test_tokens_at_a_wrong_position_fail(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_a)
        clear_slot(backend, 0)
        backend.start_request("req_gap", GREEDY)
        try:
            feed(backend, "req_gap", 0, prompt, 0)
            with pytest.raises(EngineFailure):
                feed(backend, "req_gap", 0, prompt[:1], len(prompt) + 5)
        finally:
            backend.end_request("req_gap")

    # -- constrained output --------------------------------------------------------------------------

    def _generate_text(self, backend: Backend, prompt: str, params: SamplingParams) -> tuple[str, bool]:
        tokens = generate(backend, self.chat(backend, prompt), params, max_new=self.max_json_tokens)
        ended = len(tokens) < self.max_json_tokens
        return _text(backend, tokens), ended

    def test_json_object_output_parses(self, backend: Backend) -> None:
        params = SamplingParams(temperature=0.0, json_object=True)
        # The constraint is in force: where the model would answer in prose, its first token opens an object.
        prose = _text(backend, generate(backend, self.chat(backend, self.prompt_a), max_new=1))
        opening = _text(backend, generate(backend, self.chat(backend, self.prompt_a), params, max_new=1))
        assert not prose.startswith("{") and opening.startswith("{"), (prose, opening)
        # A whole object, which the model closes by itself; then generation must end, and the text parse.
        picks: list[TokenLogprob] = []
        tokens = generate(backend, self.chat(backend, self.json_prompt, self.json_history),
                          dataclasses.replace(params, logprobs=2), max_new=self.max_json_tokens, picks=picks)
        text = _text(backend, tokens)
        narrow = [(p.piece, round(margin(p), 3)) for p in picks if margin(p) < self.min_json_margin]
        assert len(tokens) < self.max_json_tokens, (
            f"no end of generation within {self.max_json_tokens} tokens: {text!r}; decisions closer than "
            f"{self.min_json_margin} nats (another CPU may go another way): {narrow}")
        assert isinstance(json.loads(text), dict)
        # The premise, checked on every CPU: no decision on the way was close enough to go another way elsewhere.
        assert not narrow, f"{text!r} passed by luck: decisions closer than {self.min_json_margin} nats: {narrow}"

    def test_json_schema_output_validates(self, backend: Backend) -> None:
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        }
        params = SamplingParams(temperature=0.0, json_schema=json.dumps(schema))
        text, ended = self._generate_text(backend, "Describe a person called Ada who is 36, as JSON.", params)
        assert ended, f"no end of generation within {self.max_json_tokens} tokens: {text!r}"
        value = json.loads(text)
        assert isinstance(value, dict) and {"name", "age"} <= set(value)
        assert isinstance(value["name"], str)
        assert isinstance(value["age"], int) and not isinstance(value["age"], bool)

    @pytest.mark.parametrize(
        "params",
        [
            SamplingParams(grammar='root ::= "a" ('),
            SamplingParams(grammar="this is not a grammar"),
            SamplingParams(grammar='item ::= "a"'),
            SamplingParams(json_schema="{not json"),
        ],
        ids=["unbalanced", "prose", "no-root", "schema-not-json"],
    )
    def test_bad_grammar_is_an_invalid_request(self, backend: Backend, params: SamplingParams) -> None:
        with pytest.raises(InvalidRequest):
            backend.start_request("req_bad", params)
        backend.end_request("req_bad")
        # The backend is still usable.
        assert generate(backend, self.chat(backend, self.prompt_a), max_new=1)

    def test_logit_bias_outside_the_vocabulary_is_an_invalid_request(self, backend: Backend) -> None:
        with pytest.raises(InvalidRequest):
            backend.start_request("req_bias", SamplingParams(logit_bias=((10**7, 1.0),)))

    # -- log-probabilities ---------------------------------------------------------------------------

    def test_no_logprobs_unless_asked(self, backend: Backend) -> None:
        generate(backend, self.chat(backend, self.prompt_a), max_new=2)
        assert backend.logprobs() == {}

    def test_sampled_logprobs_rank_the_greedy_choice_first(self, backend: Backend) -> None:
        params = dataclasses.replace(GREEDY, logprobs=5)
        clear_slot(backend, 0)
        backend.start_request("req_lp", params)
        try:
            prompt = self.chat(backend, self.prompt_a)
            token = feed(backend, "req_lp", 0, prompt, 0)
            step = backend.logprobs()["req_lp"]
            assert backend.logprobs() == {}, "taken once"
        finally:
            backend.end_request("req_lp")
        lp = step.sampled
        assert lp is not None and lp.token == token and step.prompt == []
        assert lp.piece == backend.token_piece(token)
        assert len(lp.top) == 5 and lp.top[0][0] == token, "greedy picks the most likely token"
        values = [v for _, _, v in lp.top]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert abs(lp.logprob - values[0]) < 1e-6 and sum(math.exp(v) for v in values) <= 1 + 1e-5
        assert all(piece == backend.token_piece(t) for t, piece, _ in lp.top)

    def test_prompt_logprobs_cover_every_prompt_token_across_chunks(self, backend: Backend) -> None:
        prompt = self.chat(backend, self.prompt_b)
        params = dataclasses.replace(GREEDY, logprobs=0, prompt_logprobs=2)
        clear_slot(backend, 0)
        backend.start_request("req_plp", params)
        try:
            half = len(prompt) // 2
            assert feed(backend, "req_plp", 0, prompt[:half], 0, sample=False) is None
            first = backend.logprobs()["req_plp"].prompt
            token = feed(backend, "req_plp", 0, prompt[half:], half)
            rest = backend.logprobs()["req_plp"]
        finally:
            backend.end_request("req_plp")
        entries = first + rest.prompt
        assert [e.token for e in entries] == list(prompt), "one entry per prompt token"
        assert (entries[0].logprob, entries[0].top) == (0.0, ()), "nothing predicts the first"
        assert all(e.logprob <= 0 and len(e.top) == 2 for e in entries[1:])
        assert rest.sampled is not None and rest.sampled.token == token and rest.sampled.top == ()

    # -- lifecycle -----------------------------------------------------------------------------------

    def test_end_request_is_idempotent(self, backend: Backend) -> None:
        backend.start_request("req_end", GREEDY)
        backend.end_request("req_end")
        backend.end_request("req_end")
        backend.end_request("req_never_started")

    def test_close_is_idempotent_and_final(self) -> None:
        b = self.make_backend()
        b.close()
        b.close()
        with pytest.raises(EngineFailure):
            b.execute(StepPlan(items=[BatchItem("req_closed", 0, (1,), 0, False)]))

