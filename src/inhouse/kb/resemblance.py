"""How much of two texts is the same, for a sync to recognise a file that was moved *and* edited.

A sync finds a moved file by its bytes; an edited one has new bytes, so without this its document would be deleted
and a new one added — and with the old document go the label and the access list an administrator gave it (a
restricted board memo, moved into an archive folder and corrected on the way, came back readable by the whole
collection). So the text of a new file is compared with the text of the documents whose files are gone.

The measure is the resemblance (Jaccard index) of the two texts' sets of character 7-grams (after folding case and
whitespace), which works for Chinese as for English and is insensitive to where an edit falls; it is estimated from a
bottom-k sketch (the 256 smallest 64-bit hashes of each set, Broder 1997), so a 5 MB manual page is a 2 KB sketch
and two sketches compare in microseconds. Sets of fewer than 256 shingles are kept whole: short texts compare
exactly. The standard error at k = 256 is about 0.03 near the thresholds used.

``phrases`` is the other measure here, for text *taken* from a document into another of any size
(``kb/derived.py``): runs of 5 words, which unlike 7 characters rarely recur by chance between unrelated texts.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np

SHINGLE_CHARS = 7
PHRASE_WORDS = 5
SKETCH_SIZE = 256
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")  # a CJK character is a word of its own
_BASE = np.uint64(1_000_003)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def sketch(texts: Iterable[str]) -> np.ndarray:
    """The bottom-k sketch of ``texts`` joined: sorted unique uint64 hashes of its character 7-grams, at most 256."""
    text = " ".join(" ".join(t.split()) for t in texts).casefold()
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return np.unique(_windows(codes, SHINGLE_CHARS))[:SKETCH_SIZE]


def phrases(texts: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 hashes of every run of 5 words of ``texts`` joined (case folded; a CJK character counts
    as a word). Unlike 7 characters, 5 words rarely recur by chance between unrelated texts, so these measure text
    *taken* from another (``kb/derived.py``). Words are hashed with CRC-32, not Python's ``hash`` (salted per
    process): the same text gives the same sample in every process, so whether a document is raised does not vary
    from one run to the next."""
    words = _WORD.findall(" ".join(texts).casefold())
    vocabulary = {w: zlib.crc32(w.encode()) for w in set(words)}  # each distinct word hashed once
    codes = np.fromiter((vocabulary[w] for w in words), dtype=np.uint64, count=len(words))
    return np.unique(_windows(codes, PHRASE_WORDS))


def _windows(codes: np.ndarray, n: int) -> np.ndarray:
    """A well-mixed 64-bit hash of every window of ``n`` consecutive codes (one window if there are fewer)."""
    m = max(len(codes) - n + 1, 1 if len(codes) else 0)
    h = np.zeros(m, dtype=np.uint64)
    for j in range(min(n, len(codes))):  # a polynomial hash of each window (wrapping uint64)
        h = h * _BASE + codes[j:j + m]
    # splitmix64's finaliser, so that the smallest hashes are a uniform sample of the set
    h ^= h >> np.uint64(30)
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    h ^= h >> np.uint64(31)
    return h


def resemblance(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard index of the two shingle sets behind sketches ``a`` and ``b`` (0.0 to 1.0)."""
    if not len(a) or not len(b):
        return 0.0
    sample = np.union1d(a, b)[:SKETCH_SIZE]  # the k smallest of the union: each is in a's sketch iff it is in a's set
    both = np.intersect1d(a, b, assume_unique=True)
    return float(np.isin(sample, both, assume_unique=True).sum()) / len(sample)
