"""Evaluation over a QA set (``<corpus>/qa.jsonl``): ``python -m inhouse.kb.evaluate [--corpus DIR]``.

The corpus is ``--corpus``, else ``INHOUSE_EVAL_CORPUS``, else ``../shared/corpus`` beside the repository
(``inhouse.eval_corpus``); when none exists the command says so and exits 2.

Measures, as an admin (so access rules do not hide anything):

- **recall@5**: answerable questions whose source file is among the top 5 retrieved chunks' documents;
- **answer accuracy** (with ``--model``): answerable questions whose answer contains the key fact (compared
  after removing spaces, commas and case);
- **not-covered rate**: unanswerable questions answered "The documents do not cover this." (gate or model);
- the best cosine similarity of every question, to choose ``kb.min_similarity``.

Each top-level folder of the corpus becomes a collection of the same name (files sit under ``folder/…``,
which is how ``qa.jsonl`` names sources).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inhouse.errors import InvalidRequest
from inhouse.eval_corpus import find_eval_corpus
from inhouse.kb.answer import is_not_covered
from inhouse.kb.service import KnowledgeBase
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.config import Settings

EVAL_ACTOR = Actor(key_id="key_evaluation", name="evaluation", role="admin")
_SKIP = (".gold.json",)


@dataclass
class QuestionResult:
    id: str
    answerable: bool
    source: str
    retrieved: list[str]
    similarity: float
    lang: str = ""
    source_lang: str = ""  # the language of the source document (default: the question's)
    translation: str | None = None  # the question as searched in the other language
    sketch: str | None = None  # the model's code sketch of the question, whose names were searched too
    answer: str | None = None
    correct: bool | None = None
    seconds: float = 0.0


@dataclass
class EvalReport:
    results: list[QuestionResult] = field(default_factory=list)
    ingest: dict[str, Any] = field(default_factory=dict)

    def _answerable(self) -> list[QuestionResult]:
        return [r for r in self.results if r.answerable]

    @property
    def recall_at_5(self) -> float:
        a = self._answerable()
        return sum(r.source in r.retrieved[:5] for r in a) / len(a) if a else 0.0

    @property
    def answer_accuracy(self) -> float | None:
        a = [r for r in self._answerable() if r.correct is not None]
        return sum(bool(r.correct) for r in a) / len(a) if a else None

    @property
    def not_covered_rate(self) -> float | None:
        u = [r for r in self.results if not r.answerable and r.answer is not None]
        return sum(is_not_covered(r.answer or "") for r in u) / len(u) if u else None

    def _by_direction(self) -> dict[str, list[QuestionResult]]:
        groups: dict[str, list[QuestionResult]] = {}
        for r in self._answerable():
            groups.setdefault(f"{r.lang or '?'}→{r.source_lang or r.lang or '?'}", []).append(r)
        return dict(sorted(groups.items()))

    def recall_by_direction(self) -> dict[str, float]:
        """recall@5 per (question language → source language), e.g. ``en→zh`` for English questions whose answer
        is in a Chinese document."""
        return {k: round(sum(r.source in r.retrieved[:5] for r in v) / len(v), 3)
                for k, v in self._by_direction().items()}

    def accuracy_by_direction(self) -> dict[str, float]:
        out = {}
        for k, v in self._by_direction().items():
            judged = [r for r in v if r.correct is not None]
            if judged:
                out[k] = round(sum(bool(r.correct) for r in judged) / len(judged), 3)
        return out

    def not_covered_by_lang(self) -> dict[str, float]:
        groups: dict[str, list[QuestionResult]] = {}
        for r in self.results:
            if not r.answerable and r.answer is not None:
                groups.setdefault(r.lang or "?", []).append(r)
        return {k: round(sum(is_not_covered(r.answer or "") for r in v) / len(v), 3) for k, v in sorted(groups.items())}

    def summary(self) -> dict[str, Any]:
        sims_a = sorted(r.similarity for r in self.results if r.answerable)
        sims_u = sorted(r.similarity for r in self.results if not r.answerable)
        answered = [r for r in self.results if r.answer is not None]
        return {
            "questions": len(self.results), "answerable": len(self._answerable()),
            "recall_at_5": round(self.recall_at_5, 3),
            "recall_at_5_by_direction": self.recall_by_direction(),
            "answer_accuracy": None if self.answer_accuracy is None else round(self.answer_accuracy, 3),
            "answer_accuracy_by_direction": self.accuracy_by_direction(),
            "not_covered_rate": None if self.not_covered_rate is None else round(self.not_covered_rate, 3),
            "not_covered_by_lang": self.not_covered_by_lang(),
            "similarity_answerable_min": round(sims_a[0], 4) if sims_a else None,
            "similarity_unanswerable_max": round(sims_u[-1], 4) if sims_u else None,
            "answer_seconds_p50": round(sorted(r.seconds for r in answered)[len(answered) // 2], 2)
            if answered else None,
            "misses": [r.id for r in self._answerable() if r.source not in r.retrieved[:5]],
            "wrong": [r.id for r in self.results if r.answerable and r.correct is False],
            "ingest": self.ingest,
        }


def normalize(text: str) -> str:
    # 至 and 到 both write "to" in a range ("10:00 至 16:00" / "10:00到16:00"): the same fact either way.
    return re.sub(r"[\s,，]+", "", text).lower().replace("到", "至")


# Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, kana, Han): no word boundary can be
# seen there, so a short fact in or next to them is found as a substring.
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                       r"\uf900-\ufaff\U00020000-\U0002ffff]")


def _spaced_letter(ch: str) -> bool:
    """A letter of a script that separates words with spaces (Latin, Cyrillic, Greek, Hangul, …)."""
    return ch.isalpha() and not _UNSPACED.match(ch)


def whole_word_present(text: str, word: str) -> bool:
    """``word`` in ``text`` without a letter of a spaced script right before or after it: "no" is in "No, never"
    and in "答案是no。" but not in "not". A word of an unspaced script (调休) is a plain substring: ``\\b`` never
    matches between two Han characters, so the old check missed 调休 in the middle of a Chinese sentence."""
    t, w = text.lower(), word.lower()
    if not w:
        return False
    if _UNSPACED.search(w):
        return w in t
    at = t.find(w)
    while at >= 0:
        end = at + len(w)
        if not (at > 0 and _spaced_letter(t[at - 1])) and not (end < len(t) and _spaced_letter(t[end])):
            return True
        at = t.find(w, at + 1)
    return False


def key_fact_present(answer: str, fact: str | Sequence[str]) -> bool:
    """The fact verbatim (spaces, commas and case aside), or else every number and word of it in the answer:
    "5 unused leave days" states the fact "5 days" too. A list of facts: any one of them (the same fact as a
    question in another language may be answered: "2 倍", "twice", "double")."""
    if not isinstance(fact, str):
        return any(key_fact_present(answer, f) for f in fact)
    if is_not_covered(answer):
        return False  # "The documents do not cover this" contains "no" and "not", never a fact
    if len(fact) <= 3 and fact.isalpha():  # yes/no facts and short words: a whole word, not a substring of "not"
        return whole_word_present(answer, fact)
    if normalize(fact) in normalize(answer):
        return True
    a = normalize(answer)
    parts = re.findall(r"\d+(?:[.:]\d+)?|[^\W\d_]+", fact.replace(",", "").lower())
    return bool(parts) and all(p in a for p in parts)


def ingest_corpus(kb: KnowledgeBase, corpus: Path) -> dict[str, Any]:
    start = time.perf_counter()
    files = chunks = 0
    errors: list[str] = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        try:
            kb.collection(EVAL_ACTOR, folder.name)
        except Exception:
            kb.create_collection(EVAL_ACTOR, folder.name, groups=[folder.name])
        paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(_SKIP)]
        col = kb.collection(EVAL_ACTOR, folder.name)
        from inhouse.kb.ingest import FileSource

        sources = [FileSource(f"{folder.name}/{p.relative_to(folder).as_posix()}", p.read_bytes, p.name)
                   for p in paths]
        report = kb.ingestor.ingest(col.id, sources)
        files += report.files
        chunks += report.chunks
        errors += [f"{e.source_path}: {e.error}" for e in report.errors]
    seconds = time.perf_counter() - start
    return {"files": files, "chunks": chunks, "seconds": round(seconds, 2),
            "chunks_per_s": round(chunks / seconds, 1) if seconds else 0.0, "errors": errors}


def link_default_models(data_dir: Path, source: Path | None = None) -> None:
    """Let a fresh data directory use the models (and tuned profiles) already pulled into ``source`` (default: the
    configured data directory)."""
    from inhouse.config import load_settings

    default = load_settings(**({"data_dir": source} if source is not None else {}))
    for sub in (default.model_cache_dir, default.data_dir / "profiles"):
        if sub.is_dir() and not (data_dir / sub.name).exists():
            (data_dir / sub.name).symlink_to(sub, target_is_directory=True)


def load_questions(paths: Path | Sequence[Path], limit: int | None = None) -> list[dict[str, Any]]:
    """The questions of one or more QA files, in order; ids must be unique across them. A file that is missing or
    not a QA set is an ``InvalidRequest`` naming it (and the line), read before any evaluation work starts."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in [paths] if isinstance(paths, Path) else paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidRequest(f"{path}: no such QA file (one JSON question a line; --qa FILE names another).",
                                 param="qa") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"{path}: cannot be read as a QA file: {exc}", param="qa") from None
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidRequest(f"{path}, line {n}: not valid JSON ({exc})", param="qa") from None
            if not isinstance(row, dict) or not all(k in row for k in ("id", "question", "answerable")):
                raise InvalidRequest(f"{path}, line {n}: a question is a JSON object with \"id\", \"question\" and "
                                     "\"answerable\"", param="qa")
            if row["id"] in seen:
                raise InvalidRequest(f"{path}, line {n}: question id {row['id']!r} appears twice", param="qa")
            seen.add(row["id"])
            rows.append(row)
    return rows[:limit] if limit else rows


def evaluate(kb: KnowledgeBase, questions: list[dict[str, Any]], *, model: str | None = None,
             translate_model: str | None = None, progress: Any = None) -> EvalReport:
    """Retrieve (and with ``model``, answer) every question as an admin. The question is translated for retrieval
    by ``translate_model`` or else ``model`` when ``kb.translate_questions`` is on; recall is measured on what the
    answer would see (the hits before the similarity gate)."""
    report = EvalReport()
    for q in questions:
        start = time.perf_counter()
        g = asyncio.run(kb.answerer.ground_async(EVAL_ACTOR, q["question"], top_k=5,
                                                 model=translate_model or model))
        r = QuestionResult(q["id"], bool(q["answerable"]), q.get("source", ""),
                           [h.chunk.source_path for h in g.retrieved], g.similarity, lang=q.get("lang", ""),
                           source_lang=q.get("source_lang") or q.get("lang", ""), translation=g.translation,
                           sketch=g.sketch)
        if model is not None:
            ans = asyncio.run(kb.answerer.complete(g, model=model))
            r.answer = ans.text
            if r.answerable:
                r.correct = key_fact_present(ans.text, q["answer"])
        r.seconds = time.perf_counter() - start
        report.results.append(r)
        if progress:
            progress(r)
    return report


class EvaluationServices(Protocol):
    """What a run needs of the services (``bootstrap.build_services`` makes them; core code does not)."""

    @property
    def kb(self) -> KnowledgeBase: ...

    def close(self) -> None: ...


def main(argv: list[str] | None = None, *, open_services: Callable[[Settings], EvaluationServices]) -> int:
    ap = argparse.ArgumentParser(prog="python -m inhouse.kb.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=None,
                    help="Corpus folder (default: $INHOUSE_EVAL_CORPUS, else ../shared/corpus beside the repository)")
    ap.add_argument("--qa", type=Path, action="append", default=None,
                    help="QA file; repeat for several (default: <corpus>/qa.jsonl)")
    ap.add_argument("--model", default=None, help="Model for answers (e.g. qwen2.5-coder-1.5b); none: retrieval only")
    ap.add_argument("--translate-with", default=None, metavar="MODEL",
                    help="Model that translates the questions for retrieval (default: --model)")
    ap.add_argument("--translate", action="store_true",
                    help="Translate the questions for retrieval (kb.translate_questions; on with --translate-with)")
    ap.add_argument("--no-translate", action="store_true", help="Search the questions as asked only")
    ap.add_argument("--sketch", action="store_true",
                    help="Search also the names in the model's code sketch of each question (kb.sketch_questions)")
    ap.add_argument("--no-sketch", action="store_true", help="No code sketch (kb.sketch_questions off)")
    ap.add_argument("--data-dir", type=Path, default=None, help="Data directory (default: a temporary one)")
    ap.add_argument("--models-from", type=Path, default=None, metavar="DIR",
                    help="Data directory whose models and tuned profiles the temporary one uses (default: the "
                    "configured one, $INHOUSE_DATA_DIR)")
    ap.add_argument("--limit", type=int, default=None, help="Only the first N questions")
    ap.add_argument("--embedder", default="e5", choices=["e5", "fake"])
    ap.add_argument("--rerank", action="store_true", help="Judge passages with the model before answering")
    ap.add_argument("--no-coverage-check", action="store_true", help="Skip the model's yes/no coverage check")
    ap.add_argument("--json", action="store_true", help="Print the summary as JSON")
    ap.add_argument("--details", type=Path, default=None,
                    help="Write every question's result (retrieved sources, answer, verdict) here as JSON lines")
    args = ap.parse_args(argv)
    try:  # the corpus and its questions before any work: a typo is one line, not a traceback after the ingest
        corpus = find_eval_corpus(args.corpus)
        questions = load_questions(args.qa or [corpus / "qa.jsonl"], args.limit)
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    from inhouse.config import load_settings

    with tempfile.TemporaryDirectory(prefix="inhouse-eval-") as tmp:
        settings = load_settings(data_dir=args.data_dir or Path(tmp))
        if args.data_dir is None:
            link_default_models(Path(tmp), args.models_from)
        settings.kb.embedder = args.embedder
        settings.kb.rerank = args.rerank
        settings.kb.coverage_check = not args.no_coverage_check
        if args.no_translate or args.translate or args.translate_with:
            settings.kb.translate_questions = not args.no_translate
        if args.sketch or args.no_sketch:
            settings.kb.sketch_questions = not args.no_sketch
        services = open_services(settings)
        try:
            kb = services.kb
            ingest = ingest_corpus(kb, corpus)

            def show(r: QuestionResult) -> None:
                if not args.json:
                    mark = "" if r.correct is None else (" ok" if r.correct else " WRONG")
                    hit = "hit " if r.source in r.retrieved[:5] else ("miss" if r.answerable else "n/a ")
                    print(f"{r.id} {hit} sim={r.similarity:.3f} {r.seconds:5.1f}s{mark} {(r.answer or '')[:90]!r}"
                          + (f" [searched also: {r.translation!r}]" if r.translation else ""), file=sys.stderr)

            report = evaluate(kb, questions, model=args.model, translate_model=args.translate_with, progress=show)
            report.ingest = ingest
            if args.details is not None:
                args.details.write_text("".join(json.dumps(asdict(r), ensure_ascii=False) + "\n"
                                                for r in report.results), encoding="utf-8")
        finally:
            services.close()
    print(json.dumps(report.summary(), ensure_ascii=False, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    # A script's entry point is an edge: it wires the services; everything above takes them as arguments.
    from inhouse.bootstrap import build_services

    raise SystemExit(main(open_services=build_services))
