"""Handing deltas from an engine's threads to the asyncio loops that stream them, a batch at a time.

An engine produces deltas on a thread (the step thread in-process, the frame reader of a child process) and each
request consumes them from an event loop. One ``call_soon_threadsafe`` per delta costs a write to the loop's
self-pipe, a wake-up of the loop's thread and a callback; one ``asyncio.Queue`` item per delta costs the
request's generator a resume and the SSE writer a chunk and a socket write, for every token. On a 2-core box that
CPU is taken from llama.cpp's two threads. So:

* ``LoopMailbox``, one per event loop: a thread ``post``\\ s (inbox, item) pairs; the first post after a drain
  schedules one wake-up at once, and everything posted until the loop runs it rides on that same wake-up.
  Nothing ever waits to fill a batch: a lone delta costs exactly what it did before.
* ``Inbox``, one per request, used on its loop only: ``take`` returns everything that arrived since the request's
  generator last looked, and ``merge_deltas`` joins what it took into one delta. A stream whose consumer fell
  behind (the HTTP writer, a busy loop) then catches up with one chunk carrying several tokens, instead of one
  chunk and one socket write per token; the edge spreads the time of a delta over its tokens.

Order is kept per request (one mailbox list per loop, appended under a lock, drained in order), and a request's
last delta (its finish) is the last thing its inbox hands out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from inhouse.engine.params import Delta

Item = Delta | BaseException  # a delta, or an error raised in the caller's generator (``refused``)


class Inbox:
    """One request's undelivered items, on its event loop. ``put`` runs on the loop (from a mailbox drain)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Item] = []
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Item]:
        """Everything that arrived since the last ``take`` (at least one item), in arrival order."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items


class LoopMailbox:
    """Items for the inboxes of one event loop, posted from any thread, with at most one wake-up pending."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[Inbox, Item]] = []
        self._scheduled = False
        self.wakeups = 0  # loop wake-ups scheduled so far (a test and a profile read it)

    def post(self, items: Sequence[tuple[Inbox, Item]]) -> None:
        """Deliver ``items`` on the loop as soon as it runs. Nothing happens if the loop is closed."""
        if not items:
            return
        with self._lock:
            self._items.extend(items)
            if self._scheduled:  # a wake-up is pending: it will take these too
                return
            self._scheduled = True
            self.wakeups += 1
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            with self._lock:
                self._items.clear()
                self._scheduled = False

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for inbox, item in items:
            inbox.put(item)


class Mailboxes:
    """The ``LoopMailbox`` of each event loop an engine serves (one in a server; tests and tools run several)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: dict[asyncio.AbstractEventLoop, LoopMailbox] = {}

    def of(self, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        with self._lock:
            box = self._by_loop.get(loop)
            if box is None:
                for gone in [lp for lp in self._by_loop if lp.is_closed()]:
                    del self._by_loop[gone]
                box = self._by_loop[loop] = LoopMailbox(loop)
            return box


def merge_deltas(deltas: Sequence[Delta]) -> Delta:
    """Several deltas of one request received together, as one (text, tokens and their log-probabilities
    joined; counts and the finish from the last; the prompt's log-probabilities from the one that has them).
    The edge spreads the time of a delta over its tokens, so nothing is lost."""
    if len(deltas) == 1:
        return deltas[0]
    last = deltas[-1]
    logprobs = ([e for d in deltas for e in (d.logprobs or ())]
                if any(d.logprobs is not None for d in deltas) else None)
    prompt_logprobs = next((d.prompt_logprobs for d in deltas if d.prompt_logprobs is not None), None)
    return Delta(last.request_id, text="".join(d.text for d in deltas),
                 token_ids=[t for d in deltas for t in d.token_ids], finish_reason=last.finish_reason,
                 n_prompt_tokens=last.n_prompt_tokens, n_generated_tokens=last.n_generated_tokens,
                 n_cached_tokens=last.n_cached_tokens, error=last.error, logprobs=logprobs,
                 prompt_logprobs=prompt_logprobs, error_code=last.error_code, retry_after_s=last.retry_after_s)


def batches(items: list[Item]) -> list[Delta | BaseException]:
    """What ``take`` returned, ready to hand out: consecutive deltas merged into one, an error kept in its place
    (the generator raises it after handing out the deltas before it)."""
    out: list[Delta | BaseException] = []
    run: list[Delta] = []
    for item in items:
        if isinstance(item, Delta):
            run.append(item)
            continue
        if run:
            out.append(merge_deltas(run))
            run = []
        out.append(item)
    if run:
        out.append(merge_deltas(run))
    return out
