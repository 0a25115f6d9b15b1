"""Request bodies of the OpenAI-compatible routes.

Bounded everywhere (list sizes, string lengths) so a hostile body costs little to refuse; NaN/inf are
rejected; unknown fields are ignored because OpenAI clients send extras. Semantics (roles, content
parts, tool shapes, the max_tokens cap) are checked by the core in ``chat/service.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from inhouse.api.bounds import MAX_INT32, MAX_INT64, PositiveCount
from inhouse.engine.params import MAX_LOGIT_BIAS, MAX_LOGPROBS, MAX_STOP_CHARS, MAX_STOP_STRINGS

# Absolute ceiling; the configured `server.max_messages` (usually lower) is checked by the route.
HARD_MAX_MESSAGES = 10_000
MAX_TOOLS = 128
MAX_PROMPT_TOKENS_LIST = 1_000_000
MAX_PROMPTS = 64

StopString = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
TokenId = Annotated[int, Field(ge=0, le=MAX_INT32)]
CollectionName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class StreamOptions(_Body):
    include_usage: bool = False


class ChatMessage(_Body):
    # The role is a free string here so that a wrong one gets the core's message naming the index.
    role: Annotated[str, StringConstraints(max_length=32)]
    content: str | list[dict[str, Any]] | None = None
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    tool_calls: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: Annotated[str, StringConstraints(max_length=256)] | None = None


class _Sampling(_Body):
    model: ModelName
    max_tokens: PositiveCount | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=MAX_INT32)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    # Any 64-bit integer, as OpenAI takes (clients send -1 or large seeds); folded into llama.cpp's 32 bits.
    seed: Annotated[int, Field(ge=-MAX_INT64 - 1, le=MAX_INT64)] | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = None
    logit_bias: Annotated[dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]],
                          Field(max_length=MAX_LOGIT_BIAS)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None


class KnowledgeOptions(BaseModel):
    """The ``knowledge`` extension of chat completions (``api/openai/knowledge.py``). Unknown fields are refused:
    a misspelt option must not silently answer from every collection."""

    model_config = ConfigDict(extra="forbid")

    collections: Annotated[list[CollectionName], Field(max_length=64)] | None = None
    top_k: Annotated[int, Field(ge=1, le=20)] | None = None


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=HARD_MAX_MESSAGES)]
    max_completion_tokens: PositiveCount | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    # OpenAI's request metadata (string values); `metadata.label` declares the conversation's sensitivity.
    metadata: Annotated[dict[str, Annotated[str, StringConstraints(max_length=512)]],
                        Field(max_length=16)] | None = None
    # Our extension: {"label": …, "documents": [{"name": …, "label": …}]} (see governance/egress/router.py).
    inhouse: dict[str, Any] | None = None
    # Our extension: answer from company documents, {"collections": [...], "top_k": n} (see api/openai/knowledge.py).
    knowledge: KnowledgeOptions | None = None


class CompletionRequest(_Sampling):
    # A string, token ids, or a list of either (one choice set per prompt; engine.max_choices bounds prompts × n).
    prompt: (
        str
        | Annotated[list[TokenId], Field(min_length=1, max_length=MAX_PROMPT_TOKENS_LIST)]
        | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1, max_length=MAX_PROMPT_TOKENS_LIST)]],
                    Field(min_length=1, max_length=MAX_PROMPTS)]
    )
    echo: bool | None = None
    suffix: str | None = None  # fill in the middle, on models with FIM tokens (chat/completion.py)
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    best_of: PositiveCount | None = None
