"""The engine in a supervised child process (engine/process.py + engine/worker.py), with the scripted fake
model in the child: streams, errors before the first token, abort, crashes (SIGSEGV from inside, SIGKILL from
outside), the restart hook, the crash limit, unloading, and the child never outliving its parent."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from inhouse.config import EngineSettings
from inhouse.engine.params import Delta, GenerationRequest, SamplingParams
from inhouse.engine.process import EngineCrash, EngineRecipe, ProcessEngine, RestartPolicy
from inhouse.errors import (
    ContextLengthExceeded,
    EngineCrashed,
    InvalidModelFile,
    InvalidRequest,
    Overloaded,
    Unavailable,
)
from inhouse.testing.fakes import build_fake_engine, build_fake_engine_in_child

pytestmark = pytest.mark.timeout(60)

FAST = RestartPolicy(backoff_s=0.05, max_backoff_s=0.2, wait_s=20.0, stop_timeout_s=5.0)
Factory = Callable[..., ProcessEngine]


def recipe(settings: EngineSettings | None = None, **options: Any) -> EngineRecipe:
    return EngineRecipe("fake-model", None, settings or EngineSettings(), 2048, options,
                        build=build_fake_engine_in_child)


@pytest.fixture
def start() -> Iterator[Factory]:
    made: list[ProcessEngine] = []

    def make(*, settings: EngineSettings | None = None, policy: RestartPolicy = FAST, **kw: Any) -> ProcessEngine:
        hooks = {k: kw.pop(k) for k in ("on_crash", "before_restart") if k in kw}
        engine = ProcessEngine(recipe(settings, **kw), policy=policy, **hooks)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def run(engine: ProcessEngine, prompt: str, *, max_tokens: int = 64, rid: str | None = None,
        **params: Any) -> list[Delta]:
    async def go() -> list[Delta]:
        request = GenerationRequest(rid or f"req_{time.monotonic_ns()}", engine.tokenize(prompt),
                                    SamplingParams(max_tokens=max_tokens, temperature=0, **params))
        return [d async for d in engine.generate(request)]

    return asyncio.run(asyncio.wait_for(go(), 30))


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (reaped by its parent later).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_streams_the_same_as_the_engine_in_process(start: Factory) -> None:
    engine = start(reply="Hello from the child.")
    local = build_fake_engine()
    try:
        assert engine.tokenize("héllo <s>") == local.tokenize("héllo <s>")
        assert engine.tokenize("<s>", parse_special=False) == local.tokenize("<s>", parse_special=False)
    finally:
        local.close()
    assert engine.n_ctx == 2048 and engine.healthy() and engine.pid not in (None, os.getpid())
    deltas = run(engine, "Say hello")
    assert text(deltas) == "Hello from the child."
    last = deltas[-1]
    assert last.finish_reason == "stop" and last.n_generated_tokens == sum(len(d.token_ids) for d in deltas)
    assert last.n_prompt_tokens == len(engine.tokenize("Say hello"))
    stats = engine.stats()
    assert stats.generated_tokens == last.n_generated_tokens and stats.steps > 0 and stats.running == 0


def test_concurrent_requests_each_get_their_own_answer(start: Factory) -> None:
    engine = start(reply={"apple": "APPLES!", "pear": "pears.", "fig": "a fig"}, delay_s=0.002)

    async def go() -> list[str]:
        async def one(word: str, i: int) -> str:
            request = GenerationRequest(f"req_{i}", engine.tokenize(f"tell me about {word}"),
                                        SamplingParams(max_tokens=32, temperature=0))
            return "".join([d.text async for d in engine.generate(request)])

        return await asyncio.gather(*(one(w, i) for i, w in enumerate(["apple", "pear", "fig"] * 3)))

    assert asyncio.run(asyncio.wait_for(go(), 30)) == ["APPLES!", "pears.", "a fig"] * 3
    assert engine.stats().multi_sequence_steps > 0


def test_errors_before_the_first_token_keep_their_type(start: Factory) -> None:
    engine = start(settings=EngineSettings(max_running=1, max_waiting=0, n_cache_slots=0), reply="x" * 40,
                   delay_s=0.05)
    with pytest.raises(ContextLengthExceeded) as too_long:
        run(engine, "y" * 3000)
    assert too_long.value.n_ctx == 2048
    with pytest.raises(InvalidRequest, match="grammar"):
        run(engine, "hi", grammar="not a grammar")

    async def busy() -> None:
        first = engine.generate(GenerationRequest("req_busy", engine.tokenize("a"), SamplingParams(max_tokens=40)))
        await first.__anext__()  # running: the only slot is taken, and nothing may wait
        second = engine.generate(GenerationRequest("req_more", engine.tokenize("b"), SamplingParams(max_tokens=4)))
        with pytest.raises(Overloaded) as refused:
            await second.__anext__()
        assert refused.value.retry_after_s == EngineSettings().retry_after_s
        await first.aclose()  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(busy(), 30))
    assert engine.healthy()


def test_a_request_not_admitted_in_time_is_refused_across_the_process_boundary(start: Factory) -> None:
    # The refusal happens in the child's step thread, after submit returned: it crosses as a delta and is
    # raised as Overloaded (a 429), never yielded (the wait itself is real here, kept short).
    engine = start(settings=EngineSettings(max_running=1, n_cache_slots=0, max_queue_wait_s=0.3,
                                           retry_after_s=7.0), reply="x" * 400, delay_s=0.01)

    async def go() -> None:
        running = engine.generate(GenerationRequest("req_long", engine.tokenize("a"), SamplingParams(max_tokens=400)))
        await running.__anext__()
        queued = engine.generate(GenerationRequest("req_late", engine.tokenize("b"), SamplingParams(max_tokens=4)))
        with pytest.raises(Overloaded) as refused:
            await queued.__anext__()
        assert (refused.value.code, refused.value.retry_after_s) == ("queue_timeout", 7.0)
        assert "0.3 s" in refused.value.message
        await running.aclose()  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(go(), 30))
    wait_until(lambda: engine.stats().rejected_queue_timeout == 1 and engine.stats().running == 0)
    assert engine.healthy()


def test_closing_the_stream_aborts_the_request_in_the_child(start: Factory) -> None:
    engine = start(reply="z" * 500, delay_s=0.01)

    async def go() -> None:
        stream = engine.generate(GenerationRequest("req_gone", engine.tokenize("go"), SamplingParams(max_tokens=500)))
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(go(), 30))
    wait_until(lambda: engine.stats().aborted == 1 and engine.stats().running == 0)
    assert engine.stats().generated_tokens < 100


def test_a_segfault_mid_stream_ends_the_stream_with_a_retryable_error_and_the_engine_comes_back(
        start: Factory) -> None:
    crashes: list[EngineCrash] = []
    engine = start(reply="ok " * 20, crash_marker="CRASH", delay_s=0.01, on_crash=[crashes.append])
    before = run(engine, "warm up")
    assert text(before) and engine.stats().generated_tokens == before[-1].n_generated_tokens
    pid = engine.pid
    assert pid is not None
    deltas = run(engine, "please CRASH now")
    last = deltas[-1]
    assert last.finish_reason == "error" and last.error_code == EngineCrashed.code
    assert "SIGSEGV" in (last.error or "") and "Retry" in (last.error or "")
    wait_until(lambda: engine.healthy())
    assert engine.pid not in (None, pid) and not alive(pid)
    assert text(run(engine, "and again")) == ("ok " * 20)
    wait_until(lambda: bool(crashes))
    [crash] = crashes
    assert (crash.reason, crash.returncode, crash.in_flight, crash.restarting, crash.pid) == (
        "SIGSEGV", -signal.SIGSEGV, 1, True, pid)
    stats = engine.stats()
    assert stats.crashes == {"SIGSEGV": 1} and engine.restarts == 1
    # Counters survive the child: what was read before the crash is still counted.
    assert stats.generated_tokens >= before[-1].n_generated_tokens + 60


def test_sigkill_from_outside_fails_the_stream_and_the_next_request_is_served(
        start: Factory) -> None:
    engine = start(reply="slow " * 100, delay_s=0.02)
    pid = engine.pid
    assert pid is not None

    async def go() -> Delta:
        request = GenerationRequest("req_k", engine.tokenize("x"), SamplingParams(max_tokens=400, temperature=0))
        stream = engine.generate(request)
        await stream.__anext__()
        os.kill(pid, signal.SIGKILL)
        rest = [d async for d in stream]
        return rest[-1]

    last = asyncio.run(asyncio.wait_for(go(), 30))
    assert last.error_code == EngineCrashed.code and "SIGKILL" in (last.error or "")
    wait_until(engine.healthy)
    assert text(run(engine, "hi", max_tokens=5)) == "slow " and engine.stats().crashes == {"SIGKILL": 1}


def _held_restart(start: Factory, **kw: Any) -> tuple[ProcessEngine, threading.Event]:
    """An engine that has crashed and stays "restarting" until the returned event is set (its before_restart hook
    waits for it): the restart's interleaving is the test's, not the clock's."""
    release = threading.Event()

    def hold(crash: EngineCrash) -> None:
        release.wait(30)

    engine = start(reply="ok", crash_marker="CRASH", before_restart=hold, **kw)
    assert run(engine, "CRASH")[-1].error_code == EngineCrashed.code
    wait_until(lambda: engine.state == "restarting")
    return engine, release


def test_tokenize_during_a_restart_fails_at_once_instead_of_holding_a_worker_thread(start: Factory) -> None:
    # tokenize runs on the server's worker threads (ChatService.prepare_*); parked there for the restart, enough
    # retries took every one and /ready could not answer its 503 (it waited for the restart, then said 200).
    engine, release = _held_restart(start)
    outcome: list[BaseException | list[int]] = []

    def call() -> None:
        try:
            outcome.append(engine.tokenize("hello"))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(5)  # the restart is held: only an answer that does not wait for it comes back
    finished = not caller.is_alive()
    release.set()
    caller.join()
    assert finished, "tokenize waited for the restart"
    [error] = outcome
    assert isinstance(error, EngineCrashed) and "restarting" in error.message
    wait_until(engine.healthy)
    assert engine.tokenize("hello")


class _RecordingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[object] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(fn)
        return super().submit(fn, *args, **kwargs)


def test_generate_during_a_restart_waits_on_its_loop_without_a_thread_and_is_served(start: Factory) -> None:
    engine, release = _held_restart(start)
    executor = _RecordingExecutor()

    async def go() -> list[Delta]:
        asyncio.get_running_loop().set_default_executor(executor)
        request = GenerationRequest("req_w", [1, 2, 3], SamplingParams(max_tokens=4, temperature=0))
        waiting = asyncio.ensure_future(_collect(engine.generate(request)))
        for _ in range(10):  # the generator has reached its wait
            await asyncio.sleep(0)
        assert not waiting.done() and engine.state == "restarting"
        release.set()
        return await waiting

    try:
        deltas = asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        release.set()
        executor.shutdown()
    assert text(deltas) == "ok" and executor.submitted == []


def test_generate_waits_for_a_restart_at_most_wait_s(start: Factory) -> None:
    engine, release = _held_restart(start, policy=dataclasses.replace(FAST, wait_s=0.2))
    request = GenerationRequest("req_t", [1, 2, 3], SamplingParams(max_tokens=4))
    try:
        with pytest.raises(EngineCrashed, match="restarting"):
            asyncio.run(asyncio.wait_for(_collect(engine.generate(request)), 10))
    finally:
        release.set()
    wait_until(engine.healthy)


async def _collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [d async for d in stream]


def test_before_restart_may_swap_the_recipe_for_a_safe_fallback(start: Factory) -> None:
    seen: list[EngineCrash] = []

    def fallback(crash: EngineCrash) -> EngineRecipe | None:
        seen.append(crash)
        return dataclasses.replace(crash.recipe, options={**crash.recipe.options, "crash_on_load": False})

    # The first child dies while loading (as AMX did on its first decode); the second runs the fallback.
    engine = start(reply="safe", crash_on_load=True, before_restart=fallback)
    assert engine.healthy() and text(run(engine, "hi")) == "safe"
    [crash] = seen
    assert crash.reason == "SIGSEGV" and crash.in_flight == 0 and crash.recipe.options["crash_on_load"] is True


def test_after_max_crashes_the_engine_stays_down_and_says_so(start: Factory) -> None:
    crashes: list[EngineCrash] = []
    engine = start(reply="x", crash_marker="CRASH", policy=dataclasses.replace(FAST, max_crashes=0),
                   on_crash=[crashes.append])
    assert run(engine, "CRASH")[-1].error_code == EngineCrashed.code
    wait_until(lambda: engine.state == "failed")
    assert not engine.healthy() and engine.pid is None
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as down:
        run(engine, "hello")
    assert time.monotonic() - t0 < 2 and down.value.code == "engine_failed"
    wait_until(lambda: bool(crashes))  # the hooks run after the requests in flight are told
    assert [c.restarting for c in crashes] == [False]
    assert engine.stats().crashes == {"SIGSEGV": 1}


def test_the_engine_stays_down_at_the_max_crashes_th_crash_not_one_later(start: Factory) -> None:
    crashes: list[EngineCrash] = []
    engine = start(reply="x", crash_marker="CRASH", policy=dataclasses.replace(FAST, max_crashes=2),
                   on_crash=[crashes.append])
    assert run(engine, "CRASH")[-1].error_code == EngineCrashed.code
    wait_until(lambda: engine.healthy() and len(crashes) == 1)
    assert run(engine, "CRASH")[-1].error_code == EngineCrashed.code
    wait_until(lambda: len(crashes) == 2)
    assert [c.restarting for c in crashes] == [True, False] and engine.state == "failed" and engine.restarts == 1


def test_a_model_that_fails_to_load_raises_its_error_and_leaves_no_child() -> None:
    before = set(_children())
    with pytest.raises(InvalidModelFile, match="not a GGUF"):
        ProcessEngine(recipe(fail_on_load=True), policy=FAST)
    wait_until(lambda: set(_children()) <= before)


def test_close_fails_live_requests_as_unloaded_and_stops_the_child(start: Factory) -> None:
    engine = start(reply="w" * 300, delay_s=0.01)
    pid = engine.pid
    assert pid is not None

    async def go() -> Delta:
        stream = engine.generate(GenerationRequest("req_c", engine.tokenize("x"), SamplingParams(max_tokens=300)))
        await stream.__anext__()
        await asyncio.get_running_loop().run_in_executor(None, engine.close)
        return [d async for d in stream][-1]

    last = asyncio.run(asyncio.wait_for(go(), 30))
    assert last.finish_reason == "error" and last.error_code == "model_unloaded"
    assert not alive(pid) and engine.state == "closed" and not engine.healthy()
    with pytest.raises(Unavailable):
        engine.tokenize("x")


def test_the_child_dies_with_its_parent(tmp_path: Any) -> None:
    script = textwrap.dedent("""
        import sys, time
        from inhouse.config import EngineSettings
        from inhouse.engine.process import EngineRecipe, ProcessEngine
        from inhouse.testing.fakes import build_fake_engine_in_child
        engine = ProcessEngine(EngineRecipe("m", None, EngineSettings(), 512, build=build_fake_engine_in_child))
        print(engine.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert alive(child_pid)
        parent.kill()  # no cleanup runs in the parent
        parent.wait(10)
        wait_until(lambda: not alive(child_pid), 10)
    finally:
        parent.kill()


def _children() -> list[int]:
    from inhouse.hardware.cpu import descendant_pids

    return [p for p in descendant_pids() if alive(p)]


def test_log_probabilities_cross_the_boundary_as_the_engine_computed_them(start: Factory) -> None:
    child = start(reply="fine, thanks")
    here = build_fake_engine_in_child("fake-model", None, EngineSettings(), n_ctx=2048, reply="fine, thanks")
    try:
        through, local = (run(e, "hello there", logprobs=2, prompt_logprobs=1, rid="req_lp") for e in (child, here))
        through, local = list(through), list(local)
    finally:
        here.close()

    def sampled(ds: list[Delta]) -> list[Any]:
        return [e for d in ds for e in (d.logprobs or [])]

    def prompt(ds: list[Delta]) -> list[Any]:
        return [e for d in ds for e in (d.prompt_logprobs or [])]

    assert text(through) == text(local) == "fine, thanks"
    assert sampled(through) and sampled(through) == sampled(local)
    assert prompt(through) and prompt(through) == prompt(local)
    assert all(len(e.top) == 2 for e in sampled(through))


def test_a_consumer_that_falls_behind_gets_what_arrived_from_the_child_as_one_delta(start: Factory) -> None:
    """Frames read while the loop was busy ride on one wake-up and come out merged (engine/delivery.py): the
    text whole, every token counted, the finish last."""
    engine = start(reply="abcdefghijklmnop", delay_s=0.01)

    async def go() -> list[Delta]:
        request = GenerationRequest("req_lag", engine.tokenize("go"), SamplingParams(max_tokens=64, temperature=0))
        out = []
        async for d in engine.generate(request):
            out.append(d)
            if len(out) == 1:
                time.sleep(0.5)  # block the loop: the child finishes the answer meanwhile
        return out

    deltas = asyncio.run(asyncio.wait_for(go(), 30))
    assert "".join(d.text for d in deltas) == "abcdefghijklmnop"
    assert len(deltas) == 2 and deltas[-1].finish_reason == "stop"
    assert sum(len(d.token_ids) for d in deltas) == deltas[-1].n_generated_tokens


def test_requests_on_two_event_loops_at_once_each_get_their_answer(start: Factory) -> None:
    """Both loops read the one delta socket (serialised); a delta read by the other loop reaches its request
    through its own loop's mailbox."""
    import threading

    engine = start(reply={"apple": "APPLES! " * 8, "pear": "pears. " * 8}, delay_s=0.005)
    answers: dict[str, str] = {}

    def on_own_loop(word: str) -> None:
        async def go() -> str:
            request = GenerationRequest(f"req_{word}", engine.tokenize(f"tell me about {word}"),
                                        SamplingParams(max_tokens=64, temperature=0))
            return "".join([d.text async for d in engine.generate(request)])

        answers[word] = asyncio.run(asyncio.wait_for(go(), 30))

    threads = [threading.Thread(target=on_own_loop, args=(w,)) for w in ("apple", "pear")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert answers == {"apple": "APPLES! " * 8, "pear": "pears. " * 8}


def test_what_the_child_sent_before_it_died_reaches_the_stream_before_the_error(start: Factory) -> None:
    """The loop is busy while the child streams and is killed: the supervisor reads the rest of the delta socket
    and hands it over before the crash error, so no token the child sent is lost."""
    import threading

    engine = start(reply="slow " * 100, delay_s=0.01)
    pid = engine.pid
    assert pid is not None

    async def go() -> list[Delta]:
        request = GenerationRequest("req_d", engine.tokenize("x"), SamplingParams(max_tokens=400, temperature=0))
        out = []
        async for d in engine.generate(request):
            out.append(d)
            if len(out) == 1:
                threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
                time.sleep(1.0)  # the loop reads nothing meanwhile: the child streams, dies, is retired
        return out

    deltas = asyncio.run(asyncio.wait_for(go(), 30))
    assert deltas[-1].error_code == EngineCrashed.code
    streamed = "".join(d.text for d in deltas)
    assert ("slow " * 100).startswith(streamed) and len(streamed) > 10  # ~30 one-byte tokens in 0.3 s
