"""Checks in Python of what the model proposed: owners are attendees, evidence lines exist and support the item.

Support is lexical: the share of an item's content terms (English words, lightly stemmed; Chinese character
bigrams; numbers) that appear in its evidence line(s). It cannot tell a paraphrase from a coincidence, but it
reliably catches the failures of small models: invented line numbers, a line from another topic, an item that
is not in the transcript at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from inhouse.apps.minutes.transcript import Transcript, TranscriptLine

SUPPORT_THRESHOLD = 0.5  # share of the item's terms found in its evidence
FAR_THRESHOLD = 0.6  # stricter when the evidence is taken from farther than the cited line's neighbours
NEAR_LINES = 3

_STOP_WORDS = (
    "a an the and or but if of to in on at by for from with about as into over after before is are was were be been "
    "being am do does did done have has had will would shall should can could may might must i we you he she they "
    "it its it's this that these those there here my our your his her their me us them so not no yes ok okay let's "
    "lets let also just then than very too up out what which who whom when where why how all any each some more "
    "most other such only own same now one please will i'll we'll you'll i'm we're going get got make sure need "
    "needs"
)
_STOP = frozenset(_STOP_WORDS.split())
_WORD_RE = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_CJK_RE = re.compile(r"[\u3400-\u9fff]+")
_CJK_STOP = frozenset("的了是在我和有就这也要把给一那都不吧呢啊吗")
_PRONOUNS_SELF = frozenset({"i", "me", "myself", "speaker", "我", "本人", "我自己"})
_TITLES_RE = re.compile(r"^(?:mr|mrs|ms|dr|prof)\.?\s+", re.I)
# A request to someone else. Not "you'll"/"you will": "you'll have a copy" is a promise to the listener. 请 only on its
# own: inside 申请 (apply for), 邀请 (invite), 请假 (take leave), 请求, 请示, 请教 … it asks nobody to do anything.
_REQUEST_RE = re.compile(r"\b(?:please|can you|could you|would you|will you)\b"
                         r"|(?<![申邀聘宴提报呈])请(?![假求示教客柬帖愿款])|麻烦|你来|你负责", re.I)
_SENTENCE_RE = re.compile(r"(?<=[.?!;。？！；])\s*")
# A capitalised name followed by a pronoun is a modal verb: "Will you …", "May I …".
_MODAL_AFTER = re.compile(r"\s+(?:you|we|i|they|he|she|it)\b", re.I)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    """Content terms of a text: stemmed English words without stop words, numbers, Chinese bigrams."""
    low = text.lower()
    out = {_stem(w.replace(",", "")) for w in _WORD_RE.findall(low) if w not in _STOP and len(w) > 1}
    for run in _CJK_RE.findall(text):
        chars = [c for c in run if c not in _CJK_STOP] if len(run) > 2 else list(run)
        if len(chars) == 1:
            out.add(chars[0])
        out.update(chars[i] + chars[i + 1] for i in range(len(chars) - 1))
    return out


def support(item_text: str, evidence_text: str) -> float:
    """Share of the item's terms present in the evidence (0..1); an item with no terms is unsupported."""
    item = terms(item_text)
    if not item:
        return 0.0
    return len(item & terms(evidence_text)) / len(item)


def supports(item_text: str, evidence_text: str, threshold: float = SUPPORT_THRESHOLD) -> bool:
    item = terms(item_text)
    shared = item & terms(evidence_text)
    need = 1 if len(item) <= 2 else 2
    return bool(item) and len(shared) >= need and len(shared) / len(item) >= threshold


def evidence_text(line: TranscriptLine) -> str:
    return f"{line.speaker or ''} {line.text}"


def find_evidence(item_text: str, cited: int, tr: Transcript, window: Sequence[int]) -> TranscriptLine | None:
    """The line that supports ``item_text`` best among the cited one and its ±3 neighbours (the cited line wins
    ties: models often cite a line that only names the topic), else the best line of the window under a stricter
    threshold. None: nothing supports it."""
    around = [n for n in range(cited - NEAR_LINES, cited + NEAR_LINES + 1) if n != cited and n in window]
    near = [cited, *sorted(around, key=lambda n: abs(n - cited))]
    best = _best(item_text, near, tr, SUPPORT_THRESHOLD)
    if best is None:
        best = _best(item_text, window, tr, FAR_THRESHOLD)
    return best


def _best(item_text: str, numbers: Iterable[int], tr: Transcript, threshold: float) -> TranscriptLine | None:
    scored: list[tuple[float, int, TranscriptLine]] = []
    for rank, n in enumerate(numbers):
        line = tr.line(n)
        if line is not None and supports(item_text, evidence_text(line), threshold):
            scored.append((support(item_text, evidence_text(line)), -rank, line))
    if not scored:
        return None
    return max(scored, key=lambda t: (t[0], t[1]))[2]  # best support; ties: earliest in ``numbers``


# -- owners ---------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    name = re.sub(r"[(（][^)）]*[)）]", "", name)
    return _TITLES_RE.sub("", name).strip(" .,:;。，").casefold()


def map_owner(owner: str, attendees: Sequence[str], speaker: str | None = None) -> str | None:
    """The attendee ``owner`` names ("Sofia" → "Sofia Reyes", "I" → the speaker, "小李"/"李经理" → "李娜" when
    unambiguous), or None when it names no attendee."""
    raw = _norm(owner)
    if not raw:
        return None
    if raw in _PRONOUNS_SELF:
        return speaker if speaker and any(_norm(a) == _norm(speaker) for a in attendees) else None
    by_norm = {_norm(a): a for a in attendees}
    if raw in by_norm:
        return by_norm[raw]
    # "Sofia Reyes (marketing)", "Sofia R." or "Sofia": token containment either way, unique.
    owner_tokens = set(re.findall(r"[a-z0-9'’-]+", raw))
    if owner_tokens:
        hits = [a for n, a in by_norm.items() if owner_tokens <= set(re.findall(r"[a-z0-9'’-]+", n))
                or (set(re.findall(r"[a-z0-9'’-]+", n)) <= owner_tokens and n)]
        if len(hits) == 1:
            return hits[0]
    # Chinese: the full name inside the text ("李娜负责"), or a unique surname ("小李", "李经理", "老李").
    cjk_hits = [a for n, a in by_norm.items() if _CJK_RE.fullmatch(n) and (n in raw or (raw in n and len(raw) >= 2))]
    if len(cjk_hits) == 1:
        return cjk_hits[0]
    m = re.fullmatch(r"[小老]?([\u4e00-\u9fff])(?:总|经理|工|老师|主管|总监)?", raw)
    if m:
        surnames = [a for n, a in by_norm.items() if _CJK_RE.fullmatch(n) and n.startswith(m[1])]
        if len(surnames) == 1:
            return surnames[0]
    return None


def addressed_attendee(line: TranscriptLine, attendees: Sequence[str], tr: Transcript | None = None,
                       task: str | None = None) -> str | None:
    """The one attendee (not the speaker) a request on this line is addressed to: "Sofia, please …",
    "请李娜在 …"; a request naming nobody goes to the other person of the exchange (the previous speaker, else
    the next one). With ``task``, only the sentence of the line that says the task counts: in "Could you book the
    venue? I will pay the deposit." the deposit stays the speaker's. None when that is no request or names several
    people."""
    sentence = _sentence_of(line.text, task) if task else line.text
    if not _REQUEST_RE.search(sentence):
        return None
    named = _named(sentence, line.speaker, attendees) or _named(line.text, line.speaker, attendees)
    if len(named) == 1:
        return named[0]
    if named or tr is None or not line.speaker:
        return None
    for n in (line.number - 1, line.number + 1):
        other = tr.line(n)
        if other is not None and other.speaker and _norm(other.speaker) != _norm(line.speaker):
            return map_owner(other.speaker, attendees)
    return None


def _sentence_of(text: str, task: str) -> str:
    """The sentence of ``text`` that shares most terms with ``task`` (the whole text when none shares any)."""
    sentences = [s for s in _SENTENCE_RE.split(text) if s.strip()]
    best = max(sentences, key=lambda s: support(task, s), default=text)
    return best if support(task, best) > 0 else text


def _named(text: str, speaker: str | None, attendees: Sequence[str]) -> list[str]:
    """Attendees other than the speaker that ``text`` names: the first name as a capitalised word ("Will" is named
    in "Will, please …", not in "I will send" nor in "Will you …"), a Chinese name anywhere."""
    named = []
    for a in attendees:
        if speaker and _norm(a) == _norm(speaker):
            continue
        if _CJK_RE.fullmatch(a):
            if a in text:
                named.append(a)
            continue
        first = a.split()[0] if " " in a else a
        for m in re.finditer(rf"(?<![\w]){re.escape(first)}(?![\w])", text, re.I):
            if m[0][0].isupper() and not _MODAL_AFTER.match(text, m.end()):
                named.append(a)
                break
    return named
