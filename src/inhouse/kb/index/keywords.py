"""The keyword query: how a question becomes search terms. Pure (no SQL), shared by every ``IndexStore``.

Query terms are split into Latin words (>= 3 characters, minus English stop words) and CJK runs (cut into
overlapping 3-character windows, which is what a trigram index holds: Chinese needs no word splitting, and part
numbers match as substrings). Terms of 1-2 characters cannot match a trigram index; short codes among them
(``P3``, ``Q3``, and 1-2 character CJK words such as ``加班``) are returned apart so a store can fall back to a
substring scan. ``like_escape`` escapes a term for ``LIKE … ESCAPE '\\'`` (SQLite and PostgreSQL alike).
``rarest_terms`` leaves out the terms found in the most chunks when matching them all would cost too much.

A store whose keyword index holds words rather than every 3-character window (PostgreSQL's ``tsvector``) indexes
``index_terms`` of each chunk: the same Latin words and CJK windows the query side makes, in text order.

A Latin term ends where a CJK character begins (``X200路由器`` is ``x200`` and ``路由器``): text runs them together
("X200路由器的默认密码是admin"), and one token of both would hold the CJK text no CJK window could find.

Text is read as NFC with full-width letters, digits and code joiners half-width (``ＳＫＵ－４８２１７``, typed in a
Chinese IME's full-width mode, is ``sku-48217``; the parsers store full-width letters and digits half-width,
``kb/parse/blocks.py``) and without soft hyphens and zero-width characters (pasted from a web page inside a word).
A number with thousands separators (``1,250,000``) is one term, searched as a whole, not as its groups (``250`` or
``000``, in most amounts); the index side adds the number its lower groups make (``250,000``) beside the groups, so
a question naming the lower digits finds it on a word index as a substring index would.

``word_terms`` is the query of a word index that tokenizes the text itself (SQLite's FTS5 ``unicode61`` table
``kb_words``): runs of letters and digits of 2+ characters minus stop words, folded as that tokenizer folds them
(``Müller`` is ``muller``), and a term joined by ``.``, ``_`` or ``-`` (``os.chmod``, ``file_range``) as a phrase of
its parts, which is how such a tokenizer splits it. Words with digits (``X200``, ``P3``, ``51820``) are words too
(an English page's "P3 engineer"), and the SQLite store also searches them as substrings (the trigram index, or for
1-2 characters the substring scan): the tokenizer keeps letters, digits and CJK in one token ("X200路由器", "P3级故障"),
which a word query of ``x200`` cannot find.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from inhouse.kb.parse.blocks import HALF_WIDTH

_STOP = frozenset({
    "the", "and", "for", "are", "was", "were", "what", "which", "who", "whom", "whose", "when", "where", "why",
    "how", "many", "much", "does", "did", "done", "with", "that", "this", "these", "those", "from", "into", "onto",
    "over", "per", "get", "gets", "has", "have", "had", "its", "our", "your", "their", "there", "here", "about",
    "any", "all", "not", "but", "you", "can", "could", "may", "might", "must", "should", "would", "will", "shall",
    "being", "been", "than", "then", "them", "they", "she", "his", "her", "him", "also", "some", "such", "only",
    "own", "same", "very", "just", "one", "two", "company",
})
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A number with thousands separators: one term, before the Latin term (which would end at the first comma). At most
# seven groups (a quintillion), and not an item of a longer comma list ("100,101,102,…", a row of codes: as one term
# with every suffix it grew with the square of its length, past what a PostgreSQL tsvector holds).
_GROUPED = r"\d{1,3}(?:,\d{3}){1,6}(?!,?\d)"
# A CJK run, or a Latin term: a letter or digit, then letters, digits, ``_``, ``.`` and ``-``, none of them CJK.
_TOKEN_RE = re.compile(rf"[{_CJK}]+|{_GROUPED}|[^\W_{_CJK}](?:[^\W{_CJK}]|[.\-])*")
# Full-width letters and digits (U+FF10-FF19, FF21-FF3A, FF41-FF5A) and the joiners of a code (－ ． ＿) half-width;
# soft hyphens and zero-width characters removed. Full-width punctuation that ends a term (，。：) needs no folding.
# The letters and digits are the parsers' own map (``blocks.HALF_WIDTH``), which stores documents the same way.
_FOLD: dict[int, int | None] = {
    **HALF_WIDTH,
    **{c: c - 0xFEE0 for c in (0xFF0D, 0xFF0E, 0xFF3F)},
    **dict.fromkeys((0xAD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)),
}
# Runs of those characters: only they are translated (``translate`` visits every character of a chunk, 5x slower).
_FOLD_RE = re.compile(r"[\xad\u200b-\u200d\u2060\ufeff\uff0d\uff0e\uff10-\uff19\uff21-\uff3a\uff3f\uff41-\uff5a]+")
_CJK_RE = re.compile(f"[{_CJK}]")
_MAX_TERMS = 48
_WORD_RE = re.compile(r"[^\W_]+", re.ASCII)


def fold_text(text: str) -> str:
    """``text`` as terms are read from it (see the module docstring): full-width letters, digits and code joiners
    half-width, soft hyphens and zero-width characters gone, NFC."""
    if text.isascii():  # most English chunks: nothing to fold, and already NFC
        return text
    return unicodedata.normalize("NFC", _FOLD_RE.sub(lambda m: m.group().translate(_FOLD), text))


def _terms(text: str) -> tuple[list[str], list[str]]:
    long: list[str] = []
    short: list[str] = []
    for tok in _TOKEN_RE.findall(fold_text(text).lower()):
        tok = tok.strip(".-")
        if not tok:
            continue
        if _CJK_RE.match(tok):
            if len(tok) < 3:
                short.append(tok)
            else:
                long.extend(tok[i:i + 3] for i in range(len(tok) - 2))
        elif len(tok) >= 3:
            if tok not in _STOP:
                long.append(tok)
        elif tok.isalnum() and not tok.isalpha():
            short.append(tok)  # "p3", "q3": short codes carry meaning; short English words rarely do
    return long, short


def index_terms(text: str) -> list[str]:
    """The terms of a chunk, in order, repeats kept: what a word index holds for ``keyword_terms`` to find. A name
    joined by ``.``, ``_`` or ``-`` (``os.chmod``) is followed by its parts of 3+ characters (``chmod``), so a
    question naming the part finds the whole, as in a word index that splits such names."""
    out: list[str] = []
    for term in _terms(text)[0]:
        out.append(term)
        if "," in term:  # only a grouped number has one; 1,250,000: 250,000 (its groups follow, as other parts do)
            out += [term[i + 1:] for i, ch in enumerate(term) if ch == "," and "," in term[i + 1:]]
        if not _CJK_RE.match(term):
            out += [p for p in _WORD_RE.findall(term) if len(p) >= 3 and p != term and p not in _STOP]
    return out


def keyword_terms(query: str) -> tuple[list[str], list[str]]:
    """(terms of >= 3 characters for the trigram index, shorter terms for the LIKE fallback)."""
    long, short = _terms(query)
    return list(dict.fromkeys(long))[:_MAX_TERMS], list(dict.fromkeys(short))[:_MAX_TERMS]



def rarest_terms(terms: list[str], share: Callable[[str], float | None], budget: float) -> list[str]:
    """``terms`` without the most frequent ones: rarest first, a term with a known ``share`` of chunks is kept while
    the shares kept add up to at most ``budget``; terms of unknown share (too rare for the statistics) always stay,
    and so does the rarest term. Order kept.

    A term in a large share of the chunks tells little about which chunk answers (BM25 weighs it near 0) and is
    the most expensive to match: its posting list and, where ranking reads the rows (PostgreSQL), its rows."""
    known = {t: s for t in terms if (s := share(t)) is not None}
    kept = {t for t in terms if t not in known}
    total = 0.0
    for t in sorted(known, key=lambda t: known[t]):
        if total + known[t] <= budget or not (kept or total):
            kept.add(t)
            total += known[t]
    return [t for t in terms if t in kept]


_STOP_SHORT = frozenset({
    "a", "an", "as", "at", "be", "by", "do", "if", "in", "is", "it", "me", "my", "no", "of", "on", "or", "so", "to",
    "up", "us", "we", "i",
})


def word_terms(query: str) -> list[str]:
    """The non-CJK words of a query for a word index (see the module docstring); a phrase's parts are joined by
    one space."""
    out: list[str] = []
    for tok in _TOKEN_RE.findall(fold_text(query)):
        if _CJK_RE.match(tok):
            continue
        parts = re.findall(r"[^\W_]+", fold_word(tok))
        if len(parts) > 1:
            out.append(" ".join(parts))
        elif parts and len(parts[0]) >= 2 and parts[0] not in _STOP and parts[0] not in _STOP_SHORT:
            out.append(parts[0])
    return list(dict.fromkeys(out))[:_MAX_TERMS]


def fold_word(text: str) -> str:
    """``text`` as FTS5's ``unicode61 remove_diacritics 2`` folds it: a Latin letter loses its marks (``ü`` is
    ``u``, ``İ`` is ``i``), other marks go, and case folds one character to one (``ß``, ``ﬁ``, Greek accents and
    full-width forms stay, as the tokenizer keeps them; NFKD or ``casefold`` alone would not match them)."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if unicodedata.category(ch) == "Mn":
            continue
        base = unicodedata.normalize("NFD", ch)[0]
        if base != ch and (ord(base) < 0x250 or 0x1E00 <= ord(base) <= 0x1EFF):  # the Latin blocks
            ch = base
        folded = ch.casefold()
        if len(folded) != 1:
            folded = ch.lower() if len(ch.lower()) == 1 else ch
        out.append(folded)
    return "".join(out)


def like_escape(term: str) -> str:
    """``term`` with the LIKE wildcards and the escape character escaped (``ESCAPE '\\'``)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
