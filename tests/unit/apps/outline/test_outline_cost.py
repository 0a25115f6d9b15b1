"""What a large document costs the outline: a headless text is cut into parts in one pass (its part's size was
re-summed for every block: 1.5 million paragraphs held the server 26 s), and the sections are built in a worker
thread, not on the event loop."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.outline import OutlineInput, run
from inhouse.apps.outline import outline as outline_module
from inhouse.kb.document import Block
from inhouse.testing.fakes import build_fake_chat, build_fake_engine
from inhouse.types import Actor


class CountedText(str):
    """A block's text that counts how often its length is taken."""

    taken = 0

    def __len__(self) -> int:
        CountedText.taken += 1
        return super().__len__()


def test_parts_take_each_blocks_length_a_bounded_number_of_times() -> None:
    n = 20_000  # "ab" paragraphs: about 1,000 to a part of 3,000 characters
    blocks = tuple(Block(kind="paragraph", text=CountedText("ab")) for _ in range(n))
    CountedText.taken = 0
    parts = outline_module._parts(blocks, 3000)
    assert CountedText.taken <= 3 * n  # was about 1,000 a block: each block re-summed its whole part
    assert sum(len(p.text) for p in parts) == n
    sizes = [sum(map(str.__len__, p.text)) for p in parts]
    assert len(parts) > 1 and max(sizes) <= 3000 and all(s > 2900 for s in sizes[:-1])


def test_parts_still_follow_pages_and_size() -> None:
    blocks = (Block(kind="paragraph", text="a" * 2000), Block(kind="paragraph", text="b" * 2000),
              Block(kind="paragraph", text="c" * 500), Block(kind="paragraph", text=" "),
              Block(kind="paragraph", text="p1", page=1), Block(kind="paragraph", text="p1 again", page=1),
              Block(kind="paragraph", text="p2", page=2))
    parts = outline_module._parts(blocks, 3000)
    assert [(p.title, p.text) for p in parts] == [
        ("Part 1", ["a" * 2000]), ("Part 2", ["b" * 2000, "c" * 500]), ("Page 1", ["p1", "p1 again"]),
        ("Page 2", ["p2"])]


@pytest.mark.parametrize("text", ["# A\n\none\n\n## B\n\ntwo\n", "just a paragraph\n\nand another\n"])
def test_sections_are_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    seen: list[tuple[str, threading.Thread]] = []
    real_nodes, real_tree = outline_module._nodes, outline_module._tree

    def nodes(*args: Any) -> Any:
        seen.append(("nodes", threading.current_thread()))
        return real_nodes(*args)

    def tree(*args: Any) -> Any:
        seen.append(("tree", threading.current_thread()))
        return real_tree(*args)

    monkeypatch.setattr(outline_module, "_nodes", nodes)
    monkeypatch.setattr(outline_module, "_tree", tree)
    engine = build_fake_engine("fake-model", n_ctx=4096)
    try:
        ctx = AppContext(actor=Actor(key_id="key_t", name="t"), chat=build_fake_chat(engine), model="fake-model",
                         now=lambda: datetime(2026, 1, 1, tzinfo=UTC))

        async def outline() -> tuple[Any, threading.Thread]:
            out = await run(ctx, OutlineInput(data=text.encode(), filename="doc.md", key_points=False))
            return out, threading.current_thread()

        out, loop_thread = asyncio.run(outline())
    finally:
        engine.close()
    assert out.sections
    assert [name for name, _ in seen] == ["nodes", "tree"]
    assert all(thread is not loop_thread for _, thread in seen)
