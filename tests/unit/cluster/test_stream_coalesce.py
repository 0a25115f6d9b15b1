"""``coalesce``: a model replica's deltas cross Ray at most once per interval, merged, with nothing lost, the first
and the final delta never held back, and closing the stream closing the engine's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from inhouse.cluster.wire import coalesce
from inhouse.engine.params import Delta


class Source:
    """An engine's delta stream: one delta per ``gaps`` entry, after that many seconds; records its closing."""

    def __init__(self, gaps: Sequence[float], *, fail_after: int | None = None) -> None:
        self.gaps, self.fail_after = list(gaps), fail_after
        self.closed = False

    async def __call__(self) -> AsyncIterator[Delta]:
        try:
            for i, gap in enumerate(self.gaps):
                await asyncio.sleep(gap)
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("engine step failed")
                last = i == len(self.gaps) - 1
                yield Delta("r", text=f"t{i} ", token_ids=[i], n_generated_tokens=i + 1,
                            finish_reason="stop" if last else None)
        finally:
            self.closed = True


async def collect(source: Source, interval_s: float) -> list[tuple[float, Delta]]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return [(loop.time() - start, d) async for d in coalesce(source(), interval_s)]


def test_fast_tokens_are_merged_and_none_is_lost() -> None:
    got = asyncio.run(collect(Source([0.0] + [0.002] * 40), 0.05))
    deltas = [d for _, d in got]
    assert [t for d in deltas for t in d.token_ids] == list(range(41))
    assert "".join(d.text for d in deltas) == "".join(f"t{i} " for i in range(41))
    assert deltas[0].token_ids == [0]  # the first token is not held back
    assert 2 <= len(deltas) <= 6  # ~0.08 s of tokens at one message per 0.05 s
    assert deltas[-1].finish_reason == "stop" and deltas[-1].n_generated_tokens == 41


def test_slow_tokens_go_one_by_one_without_delay() -> None:
    got = asyncio.run(collect(Source([0.0, 0.03, 0.03, 0.03]), 0.01))
    assert [d.token_ids for _, d in got] == [[0], [1], [2], [3]]
    assert got[-1][0] < 0.11


def test_a_held_delta_is_sent_when_the_interval_ends() -> None:
    # Token 1 arrives 5 ms after token 0 and is held; token 2 comes much later: 1 must not wait for it.
    got = asyncio.run(collect(Source([0.0, 0.005, 0.3]), 0.05))
    assert [d.token_ids for _, d in got] == [[0], [1], [2]]
    assert got[1][0] < 0.15


def test_an_engine_error_comes_after_the_deltas_before_it() -> None:
    source = Source([0.0, 0.001, 0.001, 0.001], fail_after=3)

    async def go() -> list[Delta]:
        out: list[Delta] = []
        with pytest.raises(RuntimeError, match="engine step failed"):
            async for d in coalesce(source(), 0.05):
                out.append(d)
        return out

    deltas = asyncio.run(go())
    assert [t for d in deltas for t in d.token_ids] == [0, 1, 2]


def test_closing_the_stream_closes_the_engines() -> None:
    source = Source([0.0] + [0.01] * 100)

    async def go() -> None:
        stream = coalesce(source(), 0.02)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())
    assert source.closed


def test_zero_interval_passes_every_delta() -> None:
    got = asyncio.run(collect(Source([0.0, 0.0, 0.0]), 0.0))
    assert [d.token_ids for _, d in got] == [[0], [1], [2]]
