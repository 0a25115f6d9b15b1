"""Deltas from an engine's thread to the event loop, a batch per wake-up (engine/delivery.py), and the engines
that use it: what arrived while the consumer was busy comes out as one delta, and nothing waits for a batch."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from inhouse.engine.delivery import Inbox, LoopMailbox, Mailboxes, batches, merge_deltas
from inhouse.engine.params import Delta, GenerationRequest, SamplingParams, TokenLogprob
from inhouse.errors import Overloaded
from inhouse.testing.fakes import build_fake_engine

pytestmark = pytest.mark.timeout(60)


def test_merged_deltas_keep_log_probabilities() -> None:
    one, two = TokenLogprob(1, b"a", -0.5), TokenLogprob(2, b"b", -1.0)
    prompt = [TokenLogprob(7, b"p", 0.0)]
    m = merge_deltas([Delta("r", text="a", token_ids=[1], logprobs=[one], prompt_logprobs=prompt),
                      Delta("r", text="b", token_ids=[2], logprobs=[two], finish_reason="stop")])
    assert m.logprobs == [one, two] and m.prompt_logprobs == prompt
    plain = merge_deltas([Delta("r", text="a"), Delta("r", text="b")])
    assert plain.logprobs is None and plain.prompt_logprobs is None


def test_merged_deltas_join_text_and_tokens_and_keep_the_finish() -> None:
    ds = [Delta("r", text="a", token_ids=[1], n_generated_tokens=1),
          Delta("r", text="", token_ids=[2], n_generated_tokens=2),
          Delta("r", text="c", token_ids=[3], finish_reason="stop", n_prompt_tokens=4, n_generated_tokens=3,
                n_cached_tokens=2)]
    m = merge_deltas(ds)
    assert (m.text, m.token_ids, m.finish_reason, m.n_prompt_tokens, m.n_generated_tokens, m.n_cached_tokens) == (
        "ac", [1, 2, 3], "stop", 4, 3, 2)
    assert merge_deltas(ds[:1]) is ds[0]


def test_batches_merge_runs_of_deltas_and_keep_an_error_in_its_place() -> None:
    error = Overloaded("queue full", retry_after_s=1.0)
    out = batches([Delta("r", text="a", token_ids=[1]), Delta("r", text="b", token_ids=[2]), error,
                   Delta("r", text="c", token_ids=[3])])
    assert len(out) == 3 and out[1] is error
    first, last = out[0], out[2]
    assert isinstance(first, Delta) and (first.text, first.token_ids) == ("ab", [1, 2])
    assert isinstance(last, Delta) and last.text == "c"


def test_posts_made_before_the_loop_runs_share_one_wake_up_and_keep_their_order() -> None:
    async def go() -> tuple[list[object], list[object], int]:
        box = LoopMailbox(asyncio.get_running_loop())
        a, b = Inbox(), Inbox()

        def producer() -> None:  # another thread, while the loop is blocked below
            for i in range(50):
                box.post([(a, Delta("a", text=str(i), token_ids=[i])), (b, Delta("b", text=str(i)))])

        t = threading.Thread(target=producer)
        t.start()
        t.join()  # the loop has not run: every post after the first found the wake-up pending
        got_a, got_b = await a.take(), await b.take()
        return got_a, got_b, box.wakeups

    got_a, got_b, wakeups = asyncio.run(asyncio.wait_for(go(), 10))
    assert wakeups == 1
    assert [d.text for d in got_a] == [str(i) for i in range(50)] == [d.text for d in got_b]  # type: ignore[attr-defined]


def test_a_post_after_a_drain_wakes_the_loop_at_once_without_waiting_for_more() -> None:
    async def go() -> tuple[list[float], int]:
        box = LoopMailbox(asyncio.get_running_loop())
        inbox = Inbox()
        latencies = []
        for i in range(5):  # one item at a time: each one its own wake-up, each delivered promptly
            sent = time.perf_counter()
            threading.Thread(target=box.post, args=([(inbox, Delta("r", text=str(i)))],)).start()
            [item] = await asyncio.wait_for(inbox.take(), 5)
            latencies.append(time.perf_counter() - sent)
            assert isinstance(item, Delta) and item.text == str(i)
        return latencies, box.wakeups

    latencies, wakeups = asyncio.run(go())
    assert wakeups == 5
    assert max(latencies) < 1.0


def test_a_closed_loop_drops_posts_quietly() -> None:
    loop = asyncio.new_event_loop()
    box = Mailboxes().of(loop)
    loop.close()
    box.post([(Inbox(), Delta("r", text="late"))])  # must not raise: the request is aborted by its generator
    box.post([(Inbox(), Delta("r", text="later"))])
    assert box.wakeups == 2  # nothing stays pending on a dead loop


def test_one_mailbox_per_loop_and_closed_loops_are_forgotten() -> None:
    boxes = Mailboxes()
    old = asyncio.new_event_loop()
    first = boxes.of(old)
    assert boxes.of(old) is first
    old.close()
    new = asyncio.new_event_loop()
    try:
        assert boxes.of(new) is not first and old not in boxes._by_loop
    finally:
        new.close()


def test_a_consumer_that_falls_behind_gets_what_arrived_as_one_delta() -> None:
    """The in-process engine: while the loop is blocked the step thread produces the rest of the answer; the
    generator then hands it out as one delta with every token, the text whole and the finish last."""
    engine = build_fake_engine(script={"": "abcdefghijklmnop"}, delay_s=0.01)

    async def go() -> list[Delta]:
        request = GenerationRequest("req_1", engine.tokenize("go"), SamplingParams(max_tokens=64, temperature=0))
        out = []
        async for d in engine.generate(request):
            out.append(d)
            if len(out) == 1:
                time.sleep(0.5)  # block the loop: the engine finishes meanwhile
        return out

    try:
        deltas = asyncio.run(asyncio.wait_for(go(), 20))
    finally:
        engine.close()
    assert "".join(d.text for d in deltas) == "abcdefghijklmnop"
    assert len(deltas) == 2 and deltas[-1].finish_reason == "stop"
    assert sum(len(d.token_ids) for d in deltas) == deltas[-1].n_generated_tokens
