"""Chat and text completions, independent of HTTP.

``ChatService`` turns an OpenAI-shaped request (a plain mapping or any pydantic model) into a
``GenerationRequest`` for the right engine: resolve the model, render its chat template, tokenize, check
the context, build validated ``SamplingParams``. ``stream`` yields engine deltas; ``complete`` collects
them into text + usage, and parses tool calls when tools were offered.

Every caller passes the ``cache_owner`` of the actor it serves (``chat.affinity.cache_owner_of``): the engine
reuses a prompt prefix only between requests of the same owner. Without one a request shares the prefix cache
only with other owner-less requests (library use: a benchmark, a test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.chat.affinity import chat_affinity_key, completion_affinity_key
from inhouse.chat.completion import completion_prompts
from inhouse.chat.output import (
    CompletionResult,
    Kind,
    OutputAccumulator,
    PreparedGeneration,
    Usage,
)
from inhouse.chat.template import ChatTemplate
from inhouse.config import EngineSettings
from inhouse.engine.params import MAX_LOGPROBS, Delta, GenerationRequest, SamplingParams
from inhouse.errors import ContextLengthExceeded, InvalidModelFile, InvalidRequest, ModelNotFound

if TYPE_CHECKING:
    from inhouse.engine.protocol import EngineClient
    from inhouse.models.registry import ModelRegistry
    from inhouse.models.spec import ModelSpec

log = logging.getLogger(__name__)

__all__ = ["ChatService", "CompletionResult", "Kind", "OutputAccumulator", "PreparedGeneration", "Usage"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class ChatService:
    """Renders, tokenizes and validates requests; runs them on the registry's engines."""

    def __init__(self, registry: ModelRegistry, settings: EngineSettings, *,
                 special_tokens: Callable[[ModelSpec], tuple[str, str]] | None = None) -> None:
        self._registry = registry
        self._settings = settings
        # (bos, eos) strings of a model for its template; read from the GGUF header unless given (tests).
        self._special_tokens = special_tokens or (lambda spec: read_special_tokens(spec.path))
        self._templates: dict[tuple[str, str | None, str | None], ChatTemplate] = {}
        self._templates_lock = threading.Lock()

    def serves(self, model: str) -> bool:
        """Whether ``model`` is a local model present on this machine (not an external one)."""
        try:
            return self._registry.resolve(model).present
        except ModelNotFound:
            return False

    def judges_coverage(self, model: str) -> bool:
        """Whether the knowledge answer's coverage check may trust this local model's yes/no (measured per
        catalog model; see ``CatalogEntry.judges_coverage``)."""
        try:
            return self._registry.resolve(model).judges_coverage
        except ModelNotFound:
            return False

    # -- preparation (blocking: may load a model; call it off the event loop) ------------------------

    def prepare_chat(self, body: Any, *, cache_owner: str | None = None) -> PreparedGeneration:
        req = _as_mapping(body)
        spec = self._registry.resolve(_model_name(req))
        _refuse_unsupported(req)
        messages = _normalize_messages(req.get("messages"))
        tools, forced = _chosen_tools(_normalize_tools(req.get("tools")), req.get("tool_choice"))
        offer_tools = bool(tools)
        if forced is not None:
            req = _forcing_a_call(req, forced)
        template = self._template_for(spec)
        prompt = template.render(messages, tools=tools if offer_tools else None, add_generation_prompt=True)
        engine = self._registry.get_engine(spec.name)
        bos = template_bos(template)
        # A template that already writes BOS must not get a second one from the tokenizer.
        add_special = not (bos and prompt.startswith(bos))
        tokens = engine.tokenize(prompt, add_special=add_special, parse_special=True)
        prepared = self._prepared("chat", spec.name, engine, [tokens], req, parse_tools=offer_tools,
                                  cache_owner=cache_owner,
                                  affinity=chat_affinity_key(spec.name, messages, owner=cache_owner))
        # A bare JSON answer is a call only when it names an offered function (else it is an answer).
        return dataclasses.replace(prepared, tool_names=frozenset(t["function"]["name"] for t in tools or ()),
                                   forced_call=forced is not None)

    def prepare_completion(self, body: Any, *, cache_owner: str | None = None) -> PreparedGeneration:
        req = _as_mapping(body)
        spec = self._registry.resolve(_model_name(req))
        _refuse_unsupported(req)
        engine = self._registry.get_engine(spec.name)
        prompts = completion_prompts(req, engine, spec.name)
        echo = [p.text for p in prompts] if req.get("echo") else None
        return self._prepared("completion", spec.name, engine, [p.tokens for p in prompts], req, parse_tools=False,
                              echo=echo, cache_owner=cache_owner)

    def _prepared(self, kind: Kind, model: str, engine: EngineClient, prompts: list[list[int]],
                  req: Mapping[str, Any], *, parse_tools: bool, echo: list[str | None] | None = None,
                  affinity: str | None = None, cache_owner: str | None = None) -> PreparedGeneration:
        """One engine request per choice: ``n`` per prompt, sharing its tokens (the scheduler shares its KV)."""
        n_ctx = engine.n_ctx
        n = _choices(req, len(prompts), self._settings.max_choices)
        logprobs = _logprobs_asked(kind, req)
        rid, now = new_request_id(), time.monotonic()
        requests: list[GenerationRequest] = []
        for p, tokens in enumerate(prompts):
            key = affinity or completion_affinity_key(model, tokens, owner=cache_owner)
            if len(tokens) + 1 > n_ctx:
                raise _context_error(len(tokens), n_ctx)
            params = build_sampling_params(req, n_prompt=len(tokens), n_ctx=n_ctx, settings=self._settings)
            # echo with logprobs scores the prompt too; a token-id prompt's echo is spelled from its pieces.
            prompt_lp = None
            if echo is not None and (logprobs is not None or echo[p] is None):
                prompt_lp = logprobs or 0
            params = dataclasses.replace(params, logprobs=logprobs, prompt_logprobs=prompt_lp)
            for j in range(n):
                i = p * n + j
                seed = params.seed if params.seed is None else (params.seed + i) % 2**32  # choices differ
                requests.append(GenerationRequest(rid if i == 0 else f"{rid}-{i}", tokens,
                                                  dataclasses.replace(params, seed=seed), arrival_s=now,
                                                  affinity_key=key, cache_owner=cache_owner))
        return PreparedGeneration(kind, model, engine, requests, parse_tools=parse_tools, n=n, echo=echo,
                                  logprobs=logprobs)

    def _template_for(self, spec: ModelSpec) -> ChatTemplate:
        path = str(spec.path) if getattr(spec, "path", None) else None
        key = (spec.name, path, spec.chat_template)
        with self._templates_lock:
            cached = self._templates.get(key)
        if cached is not None:
            return cached
        if spec.chat_template:
            bos, eos = self._special_tokens(spec)
            template = ChatTemplate(spec.chat_template, bos_token=bos, eos_token=eos)
        else:
            # No template in the file: ChatML, the format of most small instruct models.
            template = ChatTemplate.chatml()
        with self._templates_lock:
            self._templates[key] = template
        return template

    # -- running --------------------------------------------------------------------------------------

    async def stream(self, prepared: PreparedGeneration, index: int = 0) -> AsyncIterator[Delta]:
        """Deltas of choice ``index``. Raises Overloaded / ContextLengthExceeded before the first one; closing
        this generator early (client gone) closes the engine's, which aborts the request."""
        agen = prepared.engine.generate(prepared.requests[index])
        try:
            async for delta in agen:
                yield delta
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    async def complete(self, prepared: PreparedGeneration) -> CompletionResult:
        """The first choice, whole (for callers inside inhouse, which ask for one)."""
        acc = OutputAccumulator(prepared)
        stream = self.stream(prepared)
        try:
            async for delta in stream:
                acc.add(delta)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return acc.result()


# -- request translation --------------------------------------------------------------------------------


def _as_mapping(body: Any) -> Mapping[str, Any]:
    if hasattr(body, "model_dump"):
        dumped: Mapping[str, Any] = body.model_dump(exclude_none=True)
        return dumped
    if isinstance(body, Mapping):
        return body
    raise InvalidRequest("The request body must be a JSON object.")


def _model_name(req: Mapping[str, Any]) -> str:
    name = req.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'model' is required.", param="model")
    return name


def _refuse_unsupported(req: Mapping[str, Any]) -> None:
    best_of = req.get("best_of")
    if best_of not in (None, 1):
        raise InvalidRequest("'best_of' above 1 is not supported (it would rank hidden choices by log-probability); "
                             "ask for 'n' choices instead.", param="best_of")


def _choices(req: Mapping[str, Any], n_prompts: int, most: int) -> int:
    """``n``, checked against ``engine.max_choices`` (sequences per request: choices × prompts)."""
    n = req.get("n")
    n = 1 if n is None else n
    if not isinstance(n, int) or n < 1:
        raise InvalidRequest("'n' must be a positive integer.", param="n")
    if n * n_prompts > most:
        what = f"n={n}" if n_prompts == 1 else f"n={n} × {n_prompts} prompts"
        raise InvalidRequest(f"{what} asks for {n * n_prompts} sequences; this server generates at most {most} per "
                             "request (setting engine.max_choices).", param="n" if n > 1 else "prompt")
    return n


def _logprobs_asked(kind: Kind, req: Mapping[str, Any]) -> int | None:
    """The alternatives per token the answer shows, or None: chat's ``logprobs`` + ``top_logprobs``, completions'
    ``logprobs`` (a count)."""
    lp, top = req.get("logprobs"), req.get("top_logprobs")
    if kind == "completion":
        if lp is None or lp is False:
            return None
        if isinstance(lp, bool) or not isinstance(lp, int):
            raise InvalidRequest("'logprobs' of a completion is the number of alternatives per token (0 to "
                                 f"{MAX_LOGPROBS}).", param="logprobs")
        k = lp
    else:
        if top is not None and not lp:
            raise InvalidRequest("'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
        if not lp:
            return None
        k = 0 if top is None else top
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_LOGPROBS:
        raise InvalidRequest(f"'top_logprobs' must be between 0 and {MAX_LOGPROBS}.",
                             param="logprobs" if kind == "completion" else "top_logprobs")
    return k


def _context_error(n_prompt: int, n_ctx: int) -> InvalidRequest:
    return ContextLengthExceeded(n_prompt, n_ctx, max_tokens=1)


def _text_content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            text = part.get("text") if isinstance(part, Mapping) else None
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(text, str):
                raise InvalidRequest(f"{where}: only text content parts are supported.", param="messages")
            parts.append(text)
        return "".join(parts)
    raise InvalidRequest(f"{where}: 'content' must be a string or a list of text parts.", param="messages")


def _normalize_messages(raw: Any) -> list[dict[str, Any]]:
    """OpenAI messages → the plain dicts Hugging Face-style templates expect."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise InvalidRequest("'messages' must be a non-empty list.", param="messages")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise InvalidRequest(f"{where} must be an object.", param="messages")
        role = m.get("role")
        if role not in _ROLES:
            raise InvalidRequest(f"{where}: 'role' must be one of {', '.join(_ROLES)}.", param="messages")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role,
                               "content": _text_content(m.get("content"), where)}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = [_normalize_call(c, where) for c in m["tool_calls"]]
        if role == "tool" and m.get("tool_call_id") is not None:
            msg["tool_call_id"] = str(m["tool_call_id"])
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _normalize_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        raise InvalidRequest(f"{where}: each tool call needs a 'function'.", param="messages")
    fn = call["function"]
    args: Any = fn.get("arguments", {})
    if isinstance(args, str):
        # Templates render arguments with `tojson`; give them the object, not a JSON string of it.
        with contextlib.suppress(json.JSONDecodeError):
            args = json.loads(args) if args.strip() else {}
    return {"id": str(call.get("id", "")), "type": "function",
            "function": {"name": str(fn.get("name", "")), "arguments": args}}


def _normalize_tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise InvalidRequest("'tools' must be a list.", param="tools")
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': …}}}}.",
                                 param="tools")
        tools.append({"type": "function", "function": dict(fn)})
    return tools or None


def _chosen_tools(tools: list[dict[str, Any]] | None, choice: Any,
                  ) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """The tools to offer for ``tool_choice``, and those one of which the answer must call (None: the model may
    answer in text). ``required`` forces a call of any tool, a named function a call of that one (and only it is
    offered); ``none`` offers none."""
    if choice is None or choice == "auto":
        return tools, None
    if choice == "none":
        return None, None
    if choice == "required":
        if not tools:
            raise InvalidRequest("tool_choice 'required' needs 'tools'.", param="tool_choice")
        return tools, tools
    fn = choice.get("function") if isinstance(choice, Mapping) and choice.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str):
        raise InvalidRequest("'tool_choice' must be none, auto, required or {'type': 'function', 'function': "
                             "{'name': …}}.", param="tool_choice")
    named = [t for t in tools or () if t["function"]["name"] == name]
    if not named:
        raise InvalidRequest(f"tool_choice names the function {name[:100]!r}, which is not among 'tools'.",
                             param="tool_choice")
    return named[:1], named[:1]


def _forcing_a_call(req: Mapping[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """``req`` with its answer constrained to one call of one of ``tools``: the JSON object the tool-call parser
    reads, {"name": …, "arguments": {…}}, the arguments following the tool's parameter schema."""
    fmt = req.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") not in (None, "text"):
        raise InvalidRequest("A tool_choice that forces a call cannot be combined with a JSON response_format: the "
                             "answer is the call.", param="tool_choice")
    calls = []
    for t in tools:
        params = t["function"].get("parameters")
        calls.append({"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
                      "properties": {"name": {"const": t["function"]["name"]},
                                     "arguments": params if isinstance(params, Mapping) and params else
                                     {"type": "object"}}})
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return {**req, "response_format": {"type": "json_schema", "json_schema": {"name": "tool_call",
                                                                             "schema": schema}}}


def build_sampling_params(req: Mapping[str, Any], *, n_prompt: int, n_ctx: int,
                          settings: EngineSettings) -> SamplingParams:
    """OpenAI fields (plus llama.cpp's top_k/min_p/repeat_penalty) → validated SamplingParams."""
    kw: dict[str, Any] = {}
    max_tokens = req.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = req.get("max_tokens")
    if max_tokens is None:
        max_tokens = max(1, min(settings.default_max_tokens, settings.max_tokens_cap, n_ctx - n_prompt))
    kw["max_tokens"] = max_tokens
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "frequency_penalty",
                 "presence_penalty"):
        if req.get(name) is not None:
            kw[name] = req[name]
    seed = req.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        kw["seed"] = seed % 2**32  # OpenAI takes any 64-bit seed; llama.cpp's sampler has 32 bits
    elif seed is not None:
        kw["seed"] = seed  # refused by SamplingParams.validate
    stop = req.get("stop")
    if isinstance(stop, str):
        kw["stop"] = (stop,)
    elif stop is not None:
        if not isinstance(stop, Sequence):
            raise InvalidRequest("'stop' must be a string or a list of strings.", param="stop")
        kw["stop"] = tuple(stop)
    bias = req.get("logit_bias")
    if bias:
        if not isinstance(bias, Mapping):
            raise InvalidRequest("'logit_bias' must map token ids to numbers.", param="logit_bias")
        try:
            kw["logit_bias"] = tuple((int(k), float(v)) for k, v in bias.items())
        except (TypeError, ValueError):
            raise InvalidRequest("'logit_bias' must map token ids to numbers.", param="logit_bias") from None
    kw.update(_response_format(req.get("response_format")))
    return SamplingParams(**kw).validate(max_tokens_cap=settings.max_tokens_cap)


def _response_format(fmt: Any) -> dict[str, Any]:
    if fmt is None:
        return {}
    if not isinstance(fmt, Mapping):
        raise InvalidRequest("'response_format' must be an object.", param="response_format")
    kind = fmt.get("type")
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"json_object": True}
    if kind == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object.",
                                 param="response_format")
        return {"json_schema": json.dumps(schema)}
    raise InvalidRequest("response_format.type must be 'text', 'json_object' or 'json_schema'.",
                         param="response_format")


def read_special_tokens(path: Path | str | None) -> tuple[str, str]:
    """BOS/EOS strings for the template, read from the GGUF header (empty when unavailable)."""
    if not path or not Path(path).is_file():
        return "", ""
    from inhouse.models.gguf.read import read_gguf_header

    try:
        header = read_gguf_header(Path(path))
    except (OSError, InvalidModelFile) as exc:
        log.warning("could not read special tokens from %s: %s", path, exc)
        return "", ""
    return header.bos_token or "", header.eos_token or ""


def template_bos(template: ChatTemplate) -> str:
    return str(getattr(template, "bos_token", "") or "")
