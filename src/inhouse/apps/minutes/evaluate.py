"""Minutes evaluation on transcripts with gold minutes: ``python -m inhouse.apps.minutes.evaluate``.

The corpus holds ``NAME.txt`` transcripts beside ``NAME.gold.json`` (``decisions``: texts; ``action_items``:
``{owner, task, due}``; ``open_questions``; ``next_meeting``). Measures:

* decision recall: a gold decision counts when a produced decision shares ≥ 40% of its terms;
* action-item recall: a gold item counts when a produced item (each used once) has the same owner AND the same
  due date, and shares at least one term with the task (so two tasks of one person on one day stay apart);
* evidence support: the share of produced items (decisions, action items, open questions) whose evidence line
  exists and passes the lexical support check. The pipeline drops items that fail that same check, so this
  measures that nothing unsupported slipped through, not how good the paraphrases are;
* also reported: action-item precision (produced items matching a gold item), next-meeting accuracy, time.

``--corpus`` names the folder of meetings itself; without it the meetings are ``meetings/`` of the evaluation
corpus (``INHOUSE_EVAL_CORPUS``, else ``../shared/corpus`` beside the repository: ``inhouse.eval_corpus``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inhouse.apps.context import AppContext
from inhouse.apps.minutes.pipeline import MinutesOptions, run
from inhouse.apps.minutes.schema import Minutes, MinutesInput
from inhouse.apps.minutes.verify import supports, terms
from inhouse.errors import InvalidRequest
from inhouse.eval_corpus import find_eval_corpus
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService
    from inhouse.config import Settings

EVAL_ACTOR = Actor(key_id="key_eval", name="minutes evaluation (local)", role="admin")


@dataclass
class MeetingResult:
    name: str
    decisions_gold: int = 0
    decisions_found: int = 0
    actions_gold: int = 0
    actions_found: int = 0  # gold items matched (owner and due right)
    actions_produced: int = 0
    actions_correct: int = 0  # produced items that matched a gold item
    items_produced: int = 0
    items_supported: int = 0
    next_meeting_right: bool | None = None
    rejected: int = 0
    seconds: float = 0.0
    misses: list[str] = field(default_factory=list)


def _overlap(gold: str, produced: str) -> float:
    g = terms(gold)
    return len(g & terms(produced)) / len(g) if g else 0.0


def score(name: str, minutes: Minutes, gold: dict[str, Any]) -> MeetingResult:
    r = MeetingResult(name=name, rejected=len(minutes.rejected))
    gold_decisions = [str(d) for d in gold.get("decisions", [])]
    r.decisions_gold = len(gold_decisions)
    r.decisions_found = sum(any(_overlap(g, d.text) >= 0.4 for d in minutes.decisions) for g in gold_decisions)
    gold_actions = list(gold.get("action_items", []))
    r.actions_gold = len(gold_actions)
    r.actions_produced = len(minutes.action_items)
    used: set[int] = set()
    for g in gold_actions:
        candidates = [(i, _overlap(g["task"], a.task)) for i, a in enumerate(minutes.action_items)
                      if i not in used and a.owner == g["owner"] and a.due is not None
                      and a.due.isoformat() == g["due"]]
        candidates = [c for c in candidates if c[1] > 0]
        if candidates:
            used.add(max(candidates, key=lambda c: c[1])[0])
            r.actions_found += 1
        else:
            r.misses.append(f"{g['owner']} / {g['due']} / {g['task']}")
    r.actions_correct = len(used)
    items: list[tuple[str, list[Any]]] = [(d.text, d.evidence) for d in minutes.decisions]
    items += [(a.task, a.evidence) for a in minutes.action_items]
    items += [(q.text, q.evidence) for q in minutes.open_questions]
    tr_lines = {e.line: e for _, ev in items for e in ev}
    r.items_produced = len(items)
    for text, evidence in items:
        ok = bool(evidence) and all(e.line in tr_lines for e in evidence) and any(
            supports(text, f"{e.speaker or ''} {e.text}") for e in evidence)
        r.items_supported += ok
    if gold.get("next_meeting"):
        nm = minutes.next_meeting
        r.next_meeting_right = nm is not None and nm.start == gold["next_meeting"]
    return r


def summarize(results: list[MeetingResult], model: str) -> dict[str, Any]:
    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    nm = [r.next_meeting_right for r in results if r.next_meeting_right is not None]
    return {
        "model": model,
        "meetings": len(results),
        "decision_recall": ratio(sum(r.decisions_found for r in results), sum(r.decisions_gold for r in results)),
        "action_item_recall": ratio(sum(r.actions_found for r in results), sum(r.actions_gold for r in results)),
        "action_item_precision": ratio(sum(r.actions_correct for r in results),
                                       sum(r.actions_produced for r in results)),
        "evidence_support": ratio(sum(r.items_supported for r in results), sum(r.items_produced for r in results)),
        "next_meeting_accuracy": ratio(sum(nm), len(nm)),
        "items_rejected_by_verification": sum(r.rejected for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
        "per_meeting": [asdict(r) for r in results],
    }


async def evaluate(ctx: AppContext, corpus: Path, options: MinutesOptions,
                   only: str | None = None) -> list[MeetingResult]:
    results = []
    for path in sorted(corpus.glob("*.txt")):
        if only and only not in path.name:
            continue
        gold_path = path.with_name(path.name[: -len(".txt")] + ".gold.json")
        if not gold_path.is_file():
            continue
        gold = json.loads(gold_path.read_text(encoding="utf-8"))
        start = time.perf_counter()
        minutes = await run(ctx, MinutesInput(data=path.read_bytes(), filename=path.name), options=options)
        r = score(path.name, minutes, gold)
        r.seconds = round(time.perf_counter() - start, 1)
        print(f"{path.name}: actions {r.actions_found}/{r.actions_gold}, decisions {r.decisions_found}/"
              f"{r.decisions_gold}, supported {r.items_supported}/{r.items_produced}, {r.seconds}s", file=sys.stderr)
        for a in minutes.action_items:
            ev = a.evidence[0]
            print(f"   - {a.owner} | {a.due} | {a.task} | L{ev.line}: {evidence_text_of(ev)[:70]}", file=sys.stderr)
        for miss in r.misses:
            print(f"   MISSED {miss}", file=sys.stderr)
        results.append(r)
    return results


def evidence_text_of(ev: Any) -> str:
    return f"{ev.speaker or ''}: {ev.text}"


class EvaluationServices(Protocol):
    """What a run needs of the services (``bootstrap.build_services`` makes them; core code does not)."""

    @property
    def chat(self) -> ChatService: ...

    def close(self) -> None: ...


def main(argv: list[str] | None = None, *, open_services: Callable[[Settings], EvaluationServices]) -> int:
    ap = argparse.ArgumentParser(prog="python -m inhouse.apps.minutes.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=None,
                    help="Folder of NAME.txt + NAME.gold.json (default: meetings/ of the evaluation corpus)")
    ap.add_argument("--model", default=None, help="Model (default: the apps.model setting)")
    ap.add_argument("--data-dir", type=Path, default=None, help="Data directory holding the models")
    ap.add_argument("--only", default=None, help="Only transcripts whose name contains this")
    ap.add_argument("--json", action="store_true", help="Print the summary as one JSON line")
    args = ap.parse_args(argv)
    try:
        meetings = args.corpus if args.corpus is not None else find_eval_corpus() / "meetings"
        if not meetings.is_dir():
            raise InvalidRequest(f"No meetings folder at {meetings}.", code="corpus_not_found", param="corpus")
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    from inhouse.config import load_settings

    settings = load_settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    services = open_services(settings)
    model = args.model or settings.apps.model
    try:
        ctx = AppContext(actor=EVAL_ACTOR, chat=services.chat, model=model)
        options = MinutesOptions(window_tokens=settings.apps.minutes_window_tokens,
                                 max_windows=settings.apps.minutes_max_windows)
        results = asyncio.run(evaluate(ctx, meetings, options, args.only))
    finally:
        services.close()
    print(json.dumps(summarize(results, model), ensure_ascii=False, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    # A script's entry point is an edge: it wires the services; everything above takes them as arguments.
    from inhouse.bootstrap import build_services

    raise SystemExit(main(open_services=build_services))
