"""The prompts of a legacy completions request: a string, a list of strings, token ids or lists of them, and
``suffix`` (fill-in-the-middle) for the code models whose vocabulary has the FIM markers.

``suffix``: Qwen2.5-Coder (and StarCoder, DeepSeek-Coder v2 …) were trained on
``<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>`` and then write the middle. That costs nothing but
three token lookups, so it is implemented where the markers exist as single tokens of the model; any other model
gets a 400 that says so (a model without FIM training would only continue the text and ignore the suffix).
The markers are tokenized on their own: special-token syntax inside the caller's prompt or suffix stays text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest

if TYPE_CHECKING:
    from inhouse.engine.protocol import EngineClient

FIM_MARKERS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    text: str | None  # the prompt as given (what ``echo`` repeats); None for token ids


def completion_prompts(req: Mapping[str, Any], engine: EngineClient, model: str) -> list[Prompt]:
    """The request's prompts, tokenized (raw text: special-token syntax in it stays plain text)."""
    raw = req.get("prompt")
    suffix = req.get("suffix")
    items: Sequence[Any]
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(type(t) is int for t in raw)):
        items = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise InvalidRequest("'prompt' must be a non-empty string, a list of strings, a list of token ids or a list "
                             "of such lists.", param="prompt")
    prompts = []
    for i, item in enumerate(items):
        where = "'prompt'" if len(items) == 1 else f"prompt[{i}]"
        if isinstance(item, str):
            if not item and not suffix:
                raise InvalidRequest(f"{where} must not be empty.", param="prompt")
            prompts.append(Prompt(engine.tokenize(item, add_special=True, parse_special=False), item))
        elif isinstance(item, list) and item and all(type(t) is int for t in item):
            if any(t < 0 for t in item):
                raise InvalidRequest(f"Token ids in {where} must be non-negative.", param="prompt")
            prompts.append(Prompt(list(item), None))
        else:
            raise InvalidRequest(f"{where} must be a non-empty string or a non-empty list of token ids.",
                                 param="prompt")
    if suffix:
        if req.get("echo"):
            raise InvalidRequest("'echo' cannot be combined with 'suffix'.", param="echo")
        markers = fim_markers(engine, model)
        prompts = [_fill_in_the_middle(p, str(suffix), markers, engine) for p in prompts]
    return prompts


def fim_markers(engine: EngineClient, model: str) -> tuple[int, int, int]:
    """The model's three FIM marker tokens, or a 400 naming the models that have them."""
    ids = [engine.tokenize(m, add_special=False, parse_special=True) for m in FIM_MARKERS]
    if not all(len(t) == 1 for t in ids):
        raise InvalidRequest(
            f"'suffix' (fill in the middle) needs a code model trained for it; '{model}' has no fill-in-the-middle "
            "tokens. Use a model such as qwen2.5-coder-0.5b or qwen2.5-coder-1.5b, or leave 'suffix' out.",
            param="suffix")
    return ids[0][0], ids[1][0], ids[2][0]


def _fill_in_the_middle(p: Prompt, suffix: str, markers: tuple[int, int, int], engine: EngineClient) -> Prompt:
    pre, suf, mid = markers
    if p.text is None:
        head, body = [], p.tokens
    else:
        head = engine.tokenize("", add_special=True, parse_special=False)  # BOS, for models that add one
        body = engine.tokenize(p.text, add_special=False, parse_special=False) if p.text else []
    tail = engine.tokenize(suffix, add_special=False, parse_special=False)
    return Prompt([*head, pre, *body, suf, *tail, mid], p.text)
