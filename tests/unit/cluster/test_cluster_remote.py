"""``RemoteEngine`` (the ingress's engine client) over a stand-in deployment handle: what it does when a replica
answers, refuses before the first delta, or dies mid-stream; and the error records that cross the boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import RequestCancelledError

from inhouse import errors
from inhouse.api.errors import status_of
from inhouse.cluster.remote import RemoteEngine, sum_stats
from inhouse.cluster.wire import ErrorRecord, ReplicaInfo, error_from, error_record
from inhouse.engine.params import Delta, GenerationRequest, SamplingParams

INFO = ReplicaInfo(model="m", replica="r1", node_id="n1", pid=1, n_ctx=512, max_running=2, profile="none")


class _Response:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout_s: float | None = None) -> Any:
        if isinstance(self._value, BaseException):
            raise self._value
        return self._value


class _Stream:
    """What ``handle.options(stream=True).generate.remote(...)`` returns: items, then maybe an exception."""

    def __init__(self, items: list[Any], fail: BaseException | None) -> None:
        self._items, self._fail = items, fail
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[Any]:
        for item in self._items:
            yield item
        if self._fail is not None:
            raise self._fail

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, fn: Any) -> None:
        self.remote = fn


class FakeHandle:
    deployment_name = "model-m"

    def __init__(self, items: list[Any], fail: BaseException | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.streams: list[_Stream] = []
        self.describe = _Method(lambda **kw: _Response(INFO))
        self.tokenize = _Method(lambda text, *a: _Response([len(text)]))
        self.generate = _Method(self._generate)
        self._items, self._fail = items, fail

    def options(self, **_: Any) -> FakeHandle:
        return self

    def _generate(self, request: GenerationRequest, affinity_key: str | None = None) -> _Stream:
        self.calls.append((request.request_id, affinity_key))
        self.streams.append(_Stream(self._items, self._fail))
        return self.streams[-1]


def _request() -> GenerationRequest:
    return GenerationRequest("req_1", [1, 2, 3], SamplingParams(), affinity_key="conv-key")


async def _collect(engine: RemoteEngine) -> list[Delta]:
    return [d async for d in engine.generate(_request())]


def test_deltas_stream_through_with_the_affinity_key() -> None:
    deltas = [Delta("req_1", "Hel"), Delta("req_1", "lo", finish_reason="stop")]
    handle = FakeHandle(deltas)
    engine = RemoteEngine("m", handle, app_name="a", call_timeout_s=5)  # type: ignore[arg-type]
    assert engine.n_ctx == 512 and engine.tokenize("abcd") == [4]
    assert asyncio.run(_collect(engine)) == deltas
    assert handle.calls == [("req_1", "conv-key")]
    assert handle.streams[0].cancelled  # the stream is always closed


def test_an_error_before_the_first_delta_keeps_its_kind() -> None:
    full = error_record(errors.Overloaded("queue full", retry_after_s=3.0))
    engine = RemoteEngine("m", FakeHandle([full]), app_name="a", call_timeout_s=5)  # type: ignore[arg-type]
    with pytest.raises(errors.Overloaded) as caught:
        asyncio.run(_collect(engine))
    assert caught.value.retry_after_s == 3.0 and status_of(caught.value) == 429


def test_a_replica_lost_before_the_first_delta_is_unavailable() -> None:
    engine = RemoteEngine("m", FakeHandle([], ActorDiedError()), app_name="a",  # type: ignore[arg-type]
                          call_timeout_s=5)
    with pytest.raises(errors.EngineCrashed):
        asyncio.run(_collect(engine))


def test_a_replica_lost_mid_stream_ends_the_stream_with_an_error_delta() -> None:
    handle = FakeHandle([Delta("req_1", "Hel")], ActorDiedError())
    engine = RemoteEngine("m", handle, app_name="a", call_timeout_s=5)  # type: ignore[arg-type]
    got = asyncio.run(_collect(engine))
    assert [d.text for d in got] == ["Hel", ""]
    assert got[-1].finish_reason == "error" and got[-1].error and got[-1].error_code == "engine_crashed"
    assert handle.streams[0].cancelled


@pytest.mark.parametrize("before_first", [True, False], ids=["before-the-first-delta", "mid-stream"])
def test_a_stream_serve_cancelled_is_a_cancellation_not_a_failure(before_first: bool) -> None:
    # Serve cancels the calls of an ingress request it cancelled (its client left): not an engine failure (500 or
    # an error event), the request's cancellation, recorded aborted.
    handle = FakeHandle([] if before_first else [Delta("req_1", "Hel")], RequestCancelledError("req_1"))
    engine = RemoteEngine("m", handle, app_name="a", call_timeout_s=5)  # type: ignore[arg-type]
    got: list[Delta] = []

    async def collect() -> None:
        async for d in engine.generate(_request()):
            got.append(d)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(collect())
    assert [d.text for d in got] == ([] if before_first else ["Hel"])
    assert handle.streams[0].cancelled


def test_error_records_round_trip_with_status_code_and_param() -> None:
    for exc in (errors.ContextLengthExceeded(900, 512, max_tokens=1), errors.InvalidRequest("bad", param="stop"),
                errors.Unavailable("loading"), errors.EngineFailure("boom"), errors.NotFound("x")):
        back = error_from(error_record(exc))
        assert (status_of(back), back.code, back.param, back.message) == (
            status_of(exc), exc.code, exc.param, exc.message)
    assert isinstance(error_from(ErrorRecord("Nonsense", "m", "c")), errors.EngineFailure)


def test_stats_are_summed_over_replicas() -> None:
    total = sum_stats("m", [{"prefix_cache_hits": 2, "waiting": 1, "replica": "a"}, {"prefix_cache_hits": 3}])
    assert (total.model, total.prefix_cache_hits, total.waiting, total.running) == ("m", 5, 1, 0)
