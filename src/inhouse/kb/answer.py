"""Grounded answers: retrieve, build the prompt, let the model answer with ``[n]`` citations, return the cited chunks.

Prompt order is fixed instructions first (the same bytes on every request, so the engine's prefix cache keeps
their KV), then the numbered context passages, then the question. Context is kept tight (``top_k`` passages of
at most ``snippet_chars`` characters): prefill on 2 cores runs at ~100 tokens/s, so every passage costs time.

Relevance gate, three layers: (1) when the best cosine similarity between the question and any chunk the caller
may see is below ``min_similarity``, no model is asked and the answer is ``NOT_COVERED``; (2) the coverage check
asks the model one yes/no question — do these passages answer this exact question? — whose prompt is the answer
prompt plus one sentence, so the answer that follows reuses its KV from the prefix cache and the check costs a
few prompt tokens and one decoded token; "no" gives ``NOT_COVERED`` (this catches a near miss such as a question
about the X900 answered from the X300's data sheet); (3) the model is told to say the documents do not cover the
question when they don't; ``is_not_covered`` recognises all of these.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inhouse.chat.affinity import cache_owner_of
from inhouse.kb.retrieve import Hit, Retriever, SketchScope
from inhouse.kb.sketch import CodeSketcher, sketch_names, sketch_wordings
from inhouse.kb.translate import QueryTranslator
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService, Usage

NOT_COVERED = "The documents do not cover this."
NOT_COVERED_ZH = "文档中没有涉及这个问题。"

# Measured with Qwen2.5-Coder-1.5B on the QA set: an instruction to reply with an exact "not covered" sentence made
# the model give that sentence even when passage [1] held the answer (q01-q03 of qa.jsonl), so the fallback is
# worded softly here and the hard decisions are the similarity gate and the optional relevance judge.
INSTRUCTIONS = (
    "You answer questions about company documents from the numbered context passages in the user message. "
    "Answer briefly, in the language of the question. State the key fact (number, date, name) exactly as the "
    "passage writes it and cite the passages you used like [1] or [2][3]. Do not use outside knowledge; if the "
    "passages do not answer the question, say that the documents do not cover it."
)
JUDGE_INSTRUCTIONS = "You judge whether a passage answers a question. Reply with one word: yes or no."
# Appended to the answer prompt's user message (so everything before it is a cached prefix of the answer prompt).
# Wording measured on the QA set with Qwen2.5-Coder-1.5B (docs/knowledge.md): asking whether the passages "state the
# answer to this exact question (same product, …)" gave 7 false "no" out of 28 answerable questions; this wording
# gave none except on questions that are themselves yes/no questions, where the model answers the question instead
# ("May confidential data be pasted…?" → "No."). So polar questions skip the check (asked for a letter, A or B, instead,
# the model passed every unanswerable one: docs/knowledge.md); ``POLAR_HINT`` guards them instead.
COVERAGE_QUESTION = "\n\nIs the answer to this question written in the passages above? Reply yes or no."
# How a code sketch is searched (kb.sketch_questions): the code itself as one more wording, fused like a translation,
# and the fused top 20 lifted where a heading names one of its names. Measured on the Python manual against its names
# as the wording, and both (docs/knowledge.md, last run: code + lift 0.875, both + lift 0.875, names + lift 0.86).
SKETCH_USE = "code"
# A yes/no question, as Qwen2.5-Coder-1.5B reads it without a hint, gets a "Yes" whatever the passages say, or an
# invented answer when they say nothing: 10 false statements in 27 yes/no questions (benchmarks/data/qa-polar*.jsonl).
# Asked to say what the passages state first, 3; asked to quote a sentence first, 1, but it refused 10 of 16 it could
# answer (docs/knowledge.md, "Yes/no questions").
POLAR_HINT = ("\n(A yes/no question: say what the passages state about it, citing them, then answer yes or no. If they "
              "state nothing about it, say that the documents do not cover it. Answer in English.)")
POLAR_HINT_ZH = ("\n（这是是非题：先说段落对此怎么写，并注明出处，再回答是或否。"
                 "如果段落没有提到，就说文档中没有涉及这个问题。请用中文回答。）")
_CJK_RE = re.compile(r"[\u3400-\u9fff]")
_NEGATIVE_RE = re.compile(r"no\b|否|不是|没有|不[。.！!]?$")
_POLAR_RE = re.compile(
    r"^\s*(is|are|was|were|do|does|did|can|could|may|might|must|shall|should|will|would|has|have|had)\b|"
    r"(吗|(?<![什怎多这那])么)[？?]?\s*$|是否|能否|可否|可不可以|能不能|是不是|有没有|要不要",
    re.IGNORECASE,
)
_CITE_RE = re.compile(r"\[(\d{1,2})\]")
_NOT_COVERED_RE = re.compile(
    r"(documents?|passages?|context)\s+(do|does)\s+not\s+(cover|contain|mention)|"
    r"not (covered|mentioned) in the (documents?|passages?|context)|没有涉及|未涉及|没有提到|未提及",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    document_id: str
    title: str
    source_path: str
    section: str | None
    page_start: int | None
    page_end: int | None
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.n, "chunk_id": self.chunk_id, "document_id": self.document_id, "title": self.title,
                "source_path": self.source_path, "section": self.section, "page_start": self.page_start,
                "page_end": self.page_end, "snippet": self.snippet}


@dataclass
class Grounding:
    """The retrieval part of an answer: what the model will see and whether to ask it at all."""

    question: str
    hits: list[Hit]
    similarity: float
    covered: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    translation: str | None = None  # the question in the other language, searched beside it
    sketch: str | None = None  # the model's code sketch of the question, searched beside it (its names lift headings)
    retrieved: list[Hit] = field(default_factory=list)  # what retrieval found, before the gate (evaluation)
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier turns, kept when the passages change
    # With a translation: the translation searched alone, as a grounding of its own (question = the translation),
    # whose coverage check is asked in the passages' language; and both wordings' rankings interleaved, which is
    # what the answer reads once the question's own passages passed their check (see ``Answerer.check_coverage``).
    alternate: Grounding | None = None
    mixed: list[Hit] = field(default_factory=list)
    # Whose prefix cache the coverage check and the answer share (``chat.affinity.cache_owner_of`` of the actor who
    # asked): the check's prompt is the answer's prefix, and no other user may reuse either.
    cache_owner: str | None = None

    @property
    def labels(self) -> list[str]:
        return [h.chunk.label.value for h in self.hits]

    @property
    def document_ids(self) -> list[str]:
        """The documents whose passages the model is given, each once: what the audit record names."""
        return list(dict.fromkeys(h.chunk.document_id for h in self.hits))


@dataclass
class GroundedAnswer:
    text: str
    citations: list[Citation]
    grounding: Grounding
    model: str | None = None
    usage: Usage | None = None

    @property
    def covered(self) -> bool:
        return not is_not_covered(self.text)


def context_block(hits: Sequence[Hit], *, snippet_chars: int = 900) -> str:
    parts = []
    for n, h in enumerate(hits, start=1):
        c = h.chunk
        # The chunker's section path usually starts with the title already.
        where = c.section if c.section.startswith(c.title) else " > ".join(x for x in (c.title, c.section) if x)
        if c.page_start is not None:
            where += f" (page {c.page_start})"
        parts.append(f"[{n}] {where}\n{c.content[:snippet_chars].strip()}")
    return "\n\n".join(parts)


def build_messages(question: str, hits: Sequence[Hit], *, snippet_chars: int = 900,
                   history: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """System instructions (fixed) → earlier turns → context passages → question."""
    user = f"Context passages:\n\n{context_block(hits, snippet_chars=snippet_chars)}\n\nQuestion: {question}"
    polar = is_polar(question)
    if _CJK_RE.search(question):
        # The small models follow "answer in the language of the question" in the system prompt only loosely.
        user += POLAR_HINT_ZH if polar else "\n（请用中文回答。）"
    elif polar:
        user += POLAR_HINT
    elif any(_CJK_RE.search(h.chunk.content) for h in hits):
        # Chinese passages pull the answer into Chinese: an English question gets an English answer.
        user += "\n(Answer in English.)"
    return [{"role": "system", "content": INSTRUCTIONS}, *[dict(m) for m in history],
            {"role": "user", "content": user}]


def cited(text: str, hits: Sequence[Hit], *, snippet_chars: int = 300) -> list[Citation]:
    """The passages the answer cites, in order of first citation (numbers outside the context are ignored)."""
    seen: list[int] = []
    for m in _CITE_RE.finditer(text):
        n = int(m.group(1))
        if 1 <= n <= len(hits) and n not in seen:
            seen.append(n)
    out = []
    for n in seen:
        c = hits[n - 1].chunk
        out.append(Citation(n, c.id, c.document_id, c.title, c.source_path, c.section or None, c.page_start,
                            c.page_end, c.content[:snippet_chars]))
    return out


def not_covered_text(question: str) -> str:
    """The not-covered answer in the language of the question."""
    return NOT_COVERED_ZH if _CJK_RE.search(question) else NOT_COVERED


def is_polar(question: str) -> bool:
    """A yes/no question ("Is …?", "May …?", "…吗？")."""
    return bool(_POLAR_RE.search(question))


def is_negative(verdict: str) -> bool:
    """A yes/no verdict that is a clear no (anything unclear counts as yes: the answer prompt still tells the
    model to say when the passages do not cover the question)."""
    v = verdict.strip().lower().lstrip("*\"'")
    return bool(_NEGATIVE_RE.match(v))


def is_not_covered(text: str) -> bool:
    t = text.strip()
    return (not t or NOT_COVERED.lower().rstrip(".") in t.lower() or NOT_COVERED_ZH in t
            or bool(_NOT_COVERED_RE.search(t)))


class Answerer:
    def __init__(self, retriever: Retriever, chat: ChatService | None, *, top_k: int = 5,
                 min_similarity: float = 0.83, max_tokens: int = 256, snippet_chars: int = 900,
                 rerank: bool = False, rerank_top: int = 3, coverage_check: bool = False,
                 translate: bool = False, document_share: float | None = None,
                 sketch_everywhere: bool = False) -> None:
        self.retriever = retriever
        self.chat = chat
        self.translator = QueryTranslator(chat) if (translate and chat is not None) else None
        self.sketcher = CodeSketcher(chat) if chat is not None else None
        self.sketch_everywhere = sketch_everywhere  # kb.sketch_questions; else collections with sketch_questions on
        self.document_share = document_share  # None: the retriever's (search results')
        self.coverage_check = coverage_check
        self.rerank = rerank
        self.rerank_top = rerank_top
        self.top_k = top_k
        self.min_similarity = min_similarity
        self.max_tokens = max_tokens
        self.snippet_chars = snippet_chars

    def ground(self, actor: Actor, question: str, collections: Sequence[str] | None = None, *,
               top_k: int | None = None, history: Sequence[Mapping[str, Any]] = (),
               translation: str | None = None, sketch: str | None = None,
               sketch_collections: frozenset[str] | None = None) -> Grounding:
        """Blocking (embedding + SQL): call it off the event loop. ``translation`` (the question in the other
        language) is searched beside the question, and so is ``sketch`` (a code sketch of what the question asks,
        ``kb.sketch``; in ``sketch_collections`` only, when given), whose names also lift the chunks whose heading
        names them; ``ground_async`` makes both with the model."""
        # With a translation: both wordings together, the question alone and the translation alone (each searched once).
        found = self.retriever.retrieve_apart(actor, question, collections, top_k or self.top_k,
                                              alternates=[translation] if translation else (),
                                              document_share=self.document_share,
                                              expansions=sketch_wordings(sketch, SKETCH_USE),
                                              boost_names=sketch_names(sketch) if sketch else (),
                                              expansion_collections=sketch_collections, apart=bool(translation))
        g = self._grounding(question, *(found[1] if translation else found[0]), history)
        g.sketch, g.cache_owner = sketch, cache_owner_of(actor)
        if translation and len(found) == 3:  # (a translation equal to the question is no second wording)
            g.translation = translation
            g.mixed = g.retrieved = found[0][0]
            g.alternate = self._grounding(translation, *found[2], history)
            g.alternate.cache_owner = g.cache_owner
        return g

    def _grounding(self, question: str, hits: list[Hit], similarity: float,
                   history: Sequence[Mapping[str, Any]]) -> Grounding:
        """``hits`` behind the similarity gate, with the answer prompt for ``question`` when they pass."""
        covered = bool(hits) and similarity >= self.min_similarity
        g = Grounding(question, hits if covered else [], similarity, covered, retrieved=hits,
                      history=[dict(m) for m in history])
        if covered:
            g.messages = build_messages(question, hits, snippet_chars=self.snippet_chars, history=history)
        return g

    def _answer_from(self, g: Grounding, hits: list[Hit], similarity: float) -> Grounding:
        """``g``'s question answered from ``hits`` (gated by ``similarity``)."""
        out = self._grounding(g.question, hits, similarity, g.history)
        out.translation, out.sketch, out.retrieved = g.translation, g.sketch, g.retrieved
        out.cache_owner = g.cache_owner
        return out

    async def ground_async(self, actor: Actor, question: str, collections: Sequence[str] | None = None, *,
                           model: str | None = None, top_k: int | None = None,
                           history: Sequence[Mapping[str, Any]] = ()) -> Grounding:
        """``ground`` with the question also translated (``kb.translate_questions``) and sketched as code by
        ``model`` when the model runs here, so an English question finds Chinese passages and the other way round,
        and a question naming a goal finds the feature's entry. The sketch is made when a collection searched has
        ``sketch_questions`` on (and searched there only), or for every question with ``kb.sketch_questions``."""
        translation = sketch = None
        where: SketchScope | None = None
        owner = cache_owner_of(actor)  # the rewrites' prefix cache is the asker's, as the answer's
        if self.translator is not None and model:
            translation = await self.translator.translate(question, model=model, cache_owner=owner)
        # Only a model this server runs sketches: for another one the collections are not even read.
        if self.sketcher is not None and model and self.sketcher.chat.serves(model):
            where = await asyncio.to_thread(self.retriever.sketch_scope, actor, collections,
                                            everywhere=self.sketch_everywhere)
            if where is not None:
                sketch = await self.sketcher.sketch(question, model=model, subject=where.subject, cache_owner=owner)
        return await asyncio.to_thread(self.ground, actor, question, collections, top_k=top_k, history=history,
                                       translation=translation, sketch=sketch,
                                       sketch_collections=where.collection_ids if where and sketch else None)

    async def answer(self, actor: Actor, question: str, collections: Sequence[str] | None = None, *,
                     model: str, top_k: int | None = None, **sampling: Any) -> GroundedAnswer:
        g = await self.ground_async(actor, question, collections, model=model, top_k=top_k)
        return await self.complete(g, model=model, **sampling)

    async def _verdict(self, model: str, messages: list[dict[str, Any]], cache_owner: str | None) -> str:
        if self.chat is None:
            raise RuntimeError("no chat service: the relevance judge needs a model")
        body = {"model": model, "temperature": 0.0, "max_tokens": 2, "messages": messages}
        prepared = await asyncio.to_thread(self.chat.prepare_chat, body, cache_owner=cache_owner)
        return (await self.chat.complete(prepared)).text

    async def judge(self, g: Grounding, *, model: str) -> Grounding:
        """The model's checks before it answers: the coverage check (on by default), then the optional rerank.
        Only on a local model: the passages must not reach an external one before the egress policy saw them."""
        if self.chat is None or not self.chat.serves(model):
            return g
        g = await self.check_coverage(g, model=model)
        return await self.rerank_passages(g, model=model)

    async def check_coverage(self, g: Grounding, *, model: str) -> Grounding:
        """Ask whether the passages answer the exact question, on the answer prompt plus one sentence (see the
        module docstring); a clear "no" → not covered.

        With a translation the check is asked in one language at a time, never over mixed passages (over the
        interleaved passages the model said yes to near misses: docs/knowledge.md). First the question over its
        own passages: yes → the answer reads both wordings' passages interleaved (the question's own passages can
        look right in the wrong language). Else the translation over its own passages, asked in the translation's
        language: yes → the answer reads those passages, still asked the user's question."""
        checking = (self.coverage_check and not is_polar(g.question)
                    and (self.chat is None or self.chat.judges_coverage(model)))
        alt = g.alternate
        if alt is None:
            if not (checking and g.covered):
                return g  # (a model whose "no" was measured unreliable: the similarity gate decides alone)
            return g if await self._passes(g, model) else self._answer_from(g, [], g.similarity)
        mixed_similarity = max(g.similarity, alt.similarity)
        if not checking or (g.covered and await self._passes(g, model)):
            return self._answer_from(g, g.mixed, mixed_similarity)
        if alt.covered and await self._passes(alt, model):
            return self._answer_from(g, alt.hits, alt.similarity)
        return self._answer_from(g, [], mixed_similarity)

    async def _passes(self, g: Grounding, model: str) -> bool:
        """The coverage check on ``g``'s answer prompt: anything but a clear "no" passes."""
        last = g.messages[-1]
        check = {**last, "content": last["content"] + COVERAGE_QUESTION}
        return not is_negative(await self._verdict(model, [*g.messages[:-1], check], g.cache_owner))

    async def rerank_passages(self, g: Grounding, *, model: str) -> Grounding:
        """The optional rerank: ask the model, passage by passage (the top ``rerank_top``), whether it answers the
        question; keep those it says yes to, in retrieval order. None → not covered. Off unless ``rerank``."""
        if not (self.rerank and g.covered):
            return g
        kept = []
        for h in g.hits[: self.rerank_top]:
            user = (f"Passage:\n{h.chunk.content[: self.snippet_chars]}\n\nQuestion: {g.question}\n\n"
                    "Does the passage answer this exact question (the same product, person or topic)? yes or no")
            verdict = await self._verdict(model, [{"role": "system", "content": JUDGE_INSTRUCTIONS},
                                                  {"role": "user", "content": user}], g.cache_owner)
            if verdict.strip().lower().startswith(("yes", "是")):
                kept.append(h)
        return self._answer_from(g, kept, g.similarity)

    async def complete(self, g: Grounding, *, model: str, **sampling: Any) -> GroundedAnswer:
        g = await self.judge(g, model=model)
        if not g.covered:
            return GroundedAnswer(not_covered_text(g.question), [], g, model)
        if self.chat is None:
            raise RuntimeError("no chat service: grounded answers need a model")
        body = {"model": model, "messages": g.messages, "temperature": 0.0,
                "max_tokens": self.max_tokens, **sampling}
        prepared = await asyncio.to_thread(self.chat.prepare_chat, body, cache_owner=g.cache_owner)
        result = await self.chat.complete(prepared)
        text = result.text.strip()
        citations = [] if is_not_covered(text) else cited(text, g.hits)
        return GroundedAnswer(text, citations, g, result.model, result.usage)
