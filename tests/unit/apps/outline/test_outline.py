"""Outline extraction: structure from the parsed document, key points from the (fake) model, checked against
the section text; no headings → parts; bad model output for one section does not sink the outline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.outline import OutlineInput, OutlineOptions, run, to_markdown
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.errors import DocumentRejected, InvalidRequest
from inhouse.testing.fakes import build_fake_chat, build_fake_engine
from inhouse.types import Actor

DOC = """# Travel policy

Intro text about travel.

## Hotels

Hotels may cost at most 600 CNY per night in tier-1 cities.

#### Exceptions

Exceptions need the CFO's approval.

## Per diem

The per diem is 200 CNY per day.
"""


@pytest.fixture
def outline_of() -> Callable[..., object]:
    engines: list[object] = []
    calls: list[str] = []

    def make(data: str | bytes, responder: Callable[[str], str], filename: str = "policy.md", **kw: object) -> object:
        replies: dict[str, list[int]] = {}

        def script(inp: ScriptInput) -> int:
            if inp.request_id not in replies:
                prompt = decode_tokens(inp.prompt)
                calls.append(prompt)
                replies[inp.request_id] = encode_text(responder(prompt))
            toks = replies[inp.request_id]
            return toks[len(inp.generated)] if len(inp.generated) < len(toks) else EOS_ID

        engine = build_fake_engine("fake-model", n_ctx=8192, script=script)
        engines.append(engine)
        ctx = AppContext(actor=Actor(key_id="key_t", name="t"), chat=build_fake_chat(engine),
                         model="fake-model", now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
        raw = data.encode() if isinstance(data, str) else data
        return asyncio.run(run(ctx, OutlineInput(data=raw, filename=filename, **kw),  # type: ignore[arg-type]
                               OutlineOptions(**{k: v for k, v in kw.items() if k == "max_sections"})))

    make.calls = calls  # type: ignore[attr-defined]
    yield make
    for e in engines:
        e.close()  # type: ignore[attr-defined]


def points(prompt: str) -> str:
    if "Section: Hotels" in prompt:
        return json.dumps({"key_points": ["Hotels cost at most 600 CNY per night in tier-1 cities.",
                                          "Flights must be business class."]})
    if "Section: Per diem" in prompt:
        return "not json"
    return json.dumps({"key_points": []})


def test_tree_refs_pages_and_checked_points(outline_of: Callable[..., object]) -> None:
    out = outline_of(DOC, points)
    (root,) = out.sections  # type: ignore[attr-defined]
    assert (root.ref, root.title, [c.title for c in root.children]) == ("1", "Travel policy", ["Hotels", "Per diem"])
    hotels = root.children[0]
    assert hotels.ref == "1.1" and hotels.children[0].ref == "1.1.1" and hotels.children[0].level == 3
    assert hotels.key_points == ["Hotels cost at most 600 CNY per night in tier-1 cities."]
    assert hotels.rejected_points == 1  # "business class" is not in the section
    assert root.children[1].key_points == [] and out.source["failed_sections"] == 1  # type: ignore[attr-defined]
    md = to_markdown(out)  # type: ignore[arg-type]
    assert "## 1 Travel policy" in md and "#### 1.1.1 Exceptions" in md
    assert "- Hotels cost at most 600 CNY per night in tier-1 cities." in md


def test_headings_only_needs_no_model(outline_of: Callable[..., object]) -> None:
    out = outline_of(DOC, lambda prompt: pytest.fail("no model call expected"), key_points=False)
    assert out.source["model"] is None  # type: ignore[attr-defined]


def test_text_without_headings_is_cut_into_parts(outline_of: Callable[..., object]) -> None:
    text = "\n\n".join(f"Paragraph {i} says that item {i} costs {i * 10} CNY." + " filler" * 60 for i in range(12))
    out = outline_of(text, lambda p: json.dumps({"key_points": []}), filename="notes.txt")
    titles = [s.title for s in out.sections]  # type: ignore[attr-defined]
    assert titles[:2] == ["Part 1", "Part 2"]  # ~5,600 characters in parts of at most ~3,000


def test_bad_documents(outline_of: Callable[..., object]) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        outline_of("  \n", points)
    with pytest.raises(DocumentRejected):
        outline_of(b"\x89PNG\r\n\x1a\n" + b"0" * 40, points, filename="x.png")
