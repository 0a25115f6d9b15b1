"""The copy of a text the recognisers read, and the way back to the original's offsets.

Values typed or pasted in other forms are the same values: full-width digits and letters from a Chinese input
method (``１３８１２３４５６７８``, ``ａｌｉｃｅ＠…``, ``Ｘ``, ``＝``), no-break and ideographic spaces, zero-width
characters pasted from web pages and chat apps (``138\\u200b1234``). The recognisers' patterns are written for the
plain forms, so they run on an NFKC copy without format characters, and every finding is mapped back to the span
of the original text it came from: the original is what gets replaced.

Full-width CJK punctuation (``，：；（）`` …) is kept as it is: the patterns already treat it as the end of a value
(a URL stops at ``，`` but not at ``,``), and NFKC would turn it into ASCII punctuation they read as part of one.

Percent-encoded ``@``, ``=``, ``:`` and ``"`` (``zhang.wei%40qinglan.com``, ``password%3DHengtai2025``, a query
string or a log line copied from a browser) are read decoded: these four are what separate a mailbox or a
credential from the text around it. Other escapes stay as they are (a URL's ``%20`` is part of the URL).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_KEEP = frozenset("，：；！？（）［］｛｝＜＞＂＇｀～｜＼／")
# What can make a value look different from its plain form: full-width ASCII (but the punctuation kept above), odd
# spaces, zero-width and other format characters, combining accents. A text without any (most Chinese prose: its
# punctuation is kept) is its own copy, found by one regex scan instead of a loop over its characters.
_FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F) if chr(c) not in _KEEP)
_PERCENT = re.compile(r"%(?:40|3[AaDd]|22)")
_MAY_CHANGE = re.compile("[\u00a0\u00ad\u0300-\u036f\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064"
                         "\u3000\ufeff" + re.escape(_FULL_WIDTH) + "]")


@dataclass(frozen=True)
class Normalised:
    """``text`` as the recognisers read it; ``starts[j]``/``ends[j]``: the original span that gave character j."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]`` (``end > start``)."""
        return self.starts[start], self.ends[end - 1]


@lru_cache(maxsize=4096)
def _form(cluster: str) -> str:
    if cluster in _KEEP:
        return cluster
    if len(cluster) == 1 and unicodedata.category(cluster) == "Cf":
        return ""  # zero-width space and joiners, word joiner, BOM, soft hyphen, direction marks
    return unicodedata.normalize("NFKC", "".join(c for c in cluster if unicodedata.category(c) != "Cf"))


def normalise(text: str) -> Normalised | None:
    """The recognisers' copy of ``text``, or None when it is the text itself (ASCII without those escapes)."""
    if (text.isascii() or not _MAY_CHANGE.search(text)) and not ("%" in text and _PERCENT.search(text)):
        return None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    changed = False
    i, n = 0, len(text)
    while i < n:
        if text[i] == "%" and _PERCENT.match(text, i):
            j = i + 3
            cluster, form = text[i:j], chr(int(text[i + 1:j], 16))
        else:
            j = i + 1
            while j < n and unicodedata.combining(text[j]):  # a letter and its accents compose together
                j += 1
            cluster = text[i:j]
            form = _form(cluster)
        changed = changed or form != cluster
        out.append(form)
        starts += [i] * len(form)
        ends += [j] * len(form)
        i = j
    if not changed:
        return None
    return Normalised("".join(out), tuple(starts), tuple(ends))
