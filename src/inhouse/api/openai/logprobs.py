"""Token log-probabilities in OpenAI's three wire shapes.

* chat completions: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
  "refusal": null}``;
* the Responses API: the same token objects, as ``output_text.logprobs``;
* legacy completions: parallel lists ``tokens`` / ``token_logprobs`` / ``top_logprobs`` (``{token: logprob}``) /
  ``text_offset`` (where each token starts in the choice's text, ``echo`` prefix included; a token holding part of
  a character starts where that character does).

A token's text is its bytes decoded as UTF-8 with replacement (a token may hold part of a character; ``bytes`` has
the exact ones). The numbers are the model's own distribution at that position (log-softmax of the logits, before
temperature, top-p, penalties or grammar); the first prompt token has none (null).
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

from inhouse.engine.params import TokenLogprob


def _token(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def token_object(e: TokenLogprob) -> dict[str, Any]:
    """One token with its alternatives: chat's ``logprobs.content[i]`` and the Responses API's ``logprobs[i]``."""
    return {"token": _token(e.piece), "logprob": e.logprob, "bytes": list(e.piece),
            "top_logprobs": [{"token": _token(p), "logprob": lp, "bytes": list(p)} for _, p, lp in e.top]}


def chat_logprobs(entries: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {"content": [token_object(e) for e in entries], "refusal": None}


class CompletionLogprobs:
    """Builds legacy ``logprobs`` objects for one choice, chunk after chunk, keeping the text offset."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        # The offset counts the characters the pieces so far complete: a piece's own replacement-decoded text
        # counts a "\ufffd" per partial character, running past the choice's text.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def build(self, entries: Sequence[TokenLogprob], *, first_is_prompt_start: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for i, e in enumerate(entries):
            text = _token(e.piece)
            unscored = first_is_prompt_start and i == 0
            out["tokens"].append(text)
            out["token_logprobs"].append(None if unscored else e.logprob)
            out["top_logprobs"].append(None if unscored else {_token(p): lp for _, p, lp in e.top})
            out["text_offset"].append(self.offset)
            self.offset += len(self._utf8.decode(e.piece))
        return out
