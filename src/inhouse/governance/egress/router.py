"""Where a chat request may run: the one place that applies the egress policy.

``EgressRouter.route(body, actor)`` is called by the chat route before anything else happens. For a local
model it returns None (local is always allowed). For a model an external provider serves it computes the
effective label, decides, redacts if needed, records the decision in the audit sink and returns a
``RoutedRequest`` saying what to run where, or raises ``PermissionDenied`` (code ``egress_refused``).

The effective label is the maximum of:

* the conversation's label: ``metadata.label`` or ``inhouse.label`` of the request, else the policy's
  ``conversation_label``;
* the labels of attached documents (``inhouse.documents[].label``; a document without one counts as
  confidential) and of retrieved chunks (``extra_labels``, passed in by the knowledge pipeline);
* the policy's content markers matching the messages (and the text of ``tools``, ``response_format``,
  ``tool_choice`` and ``stop``, which are redacted with them), and any ``LabelSource`` given at construction;
* ``pii_label`` when the PII scan finds anything.

Secrets (passwords, keys, tokens, private keys, connection strings: ``pii/credentials.py``) are never sent
out, whatever the label allows: the request is refused or answered locally (``defaults.on_secret``, else the
provider's ``on_refusal``), and the audit record names the kinds of secret found, never a value.

Fail closed: if the policy file, a label source, the scan or the redaction fails, the decision is
``refused`` (or ``kept_local`` when ``governance.on_policy_failure = "local"``) and nothing goes out. If
the audit record cannot be written, the request fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest, PermissionDenied, Unavailable
from inhouse.governance.events import AuditSink, SecurityEvent
from inhouse.governance.labels import Label, label_of_item, max_label, parse_label
from inhouse.governance.pii.redact import (
    RedactionSession,
    Redactor,
    ScanResult,
    field_texts,
    message_texts,
    scan_forms,
)
from inhouse.governance.policy import Decision, Policy, PolicyStore, decide, decide_secrets, failure_decision
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.config import GovernanceSettings

log = logging.getLogger(__name__)

EGRESS_DECISION = "egress.decision"
# A labeller besides the built-in ones: the request body → labels of what it carries. Raising fails closed.
LabelSource = Callable[[Mapping[str, Any]], Iterable[object]]
# Request fields forwarded to a provider; everything else (metadata, user, our extensions) stays here.
_FORWARDED = ("messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
              "frequency_penalty", "presence_penalty", "response_format", "tools", "tool_choice", "stream",
              "stream_options", "logit_bias", "n", "logprobs", "top_logprobs")
# Forwarded fields besides the messages that carry free text (tool and schema descriptions, enum values, stop
# strings, the function tool_choice names): scanned, labelled and redacted with the messages, or a confidential
# marker or a password in a tool's description would go out as is.
_TEXT_FIELDS = ("tools", "response_format", "stop", "tool_choice")
_TOOL_CHOICES = ("none", "auto", "required")


@dataclass
class RoutedRequest:
    """What to run for a request that named an external model."""

    requested_model: str
    decision: Decision
    body: dict[str, Any]  # kept_local: the request for the local model; sent: the body for the provider
    session: RedactionSession = field(default_factory=RedactionSession)
    pii_found: dict[str, int] = field(default_factory=dict)
    secrets_found: dict[str, int] = field(default_factory=dict)  # by kind of secret (never the values)

    @property
    def goes_out(self) -> bool:
        return self.decision.goes_out

    def extension(self) -> dict[str, Any]:
        """The ``inhouse`` field of the response: what happened, without any value."""
        d = self.decision
        return {"destination": d.destination, "egress": d.egress, "reason": d.reason,
                "label": d.label.value if d.label else None, "redactions": self.session.report()}

    def headers(self) -> dict[str, str]:
        return {"X-Inhouse-Destination": self.decision.destination, "X-Inhouse-Egress": self.decision.egress}


class EgressRouter:
    def __init__(self, policies: PolicyStore, redactor: Redactor, audit: AuditSink, *,
                 is_local: Callable[[str], bool], local_model: Callable[[], str], on_failure: str = "refuse",
                 label_sources: Sequence[LabelSource] = ()) -> None:
        self._policies = policies
        self._redactor = redactor
        self._audit = audit
        self._is_local = is_local
        self._local_model = local_model
        self._on_failure = on_failure
        self._label_sources = tuple(label_sources)

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def external_models(self) -> list[dict[str, Any]]:
        """Entries for GET /v1/models (none while the policy is unreadable)."""
        try:
            policy = self._policies.current()
        except Unavailable:
            return []
        return [{"id": model, "provider": p.name, "max_label": p.max_label.value,
                 "max_label_after_redaction": p.max_label_after_redaction.value
                 if p.max_label_after_redaction else None}
                for model, p in policy.external_models() if not self._is_local(model)]

    def route(self, body: Mapping[str, Any], actor: Actor | None, *,
              extra_labels: Sequence[object] = ()) -> RoutedRequest | None:
        """None for a local model (or a name no one serves: the caller's ModelNotFound applies)."""
        model = body.get("model")
        if not isinstance(model, str) or self._is_local(model):
            return None
        try:
            policy = self._policies.current()
        except Unavailable as exc:
            return self._finish(model, failure_decision("", f"the egress policy is unavailable ({exc.message})",
                                                        self._on_failure), body, actor)
        provider = policy.provider_for(model)
        if provider is None:
            return None
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty list.", param="messages")
        session = RedactionSession()
        try:
            label, scan = self._effective_label(policy, body, messages, extra_labels)
            if scan.never_sent:
                decision = decide_secrets(provider, label, scan.secrets, policy.on_secret)
            else:
                decision = decide(provider, label)
            outgoing = messages
            others = _text_fields(body)
            if decision.redact:
                outgoing = self._redactor.redact_messages(messages, session)
                others = {k: self._redactor.redact_field(k, v, session) for k, v in others.items()}
        except InvalidRequest:
            raise  # the caller's own bad input (an unknown label name): a 400, nothing sent
        except Exception as exc:
            # Whatever broke (a label source, the scan, the redaction), nothing may go out.
            log.warning("egress check failed for %s: %s", model, type(exc).__name__)
            what = f"the sensitivity check failed ({type(exc).__name__})"
            return self._finish(model, failure_decision(provider.name, what, self._on_failure), body, actor)
        routed_body: dict[str, Any] = {k: body[k] for k in _FORWARDED if k in body}
        routed_body.update(others, messages=outgoing)
        routed_body["model"] = model
        return self._finish(model, decision, body, actor, routed_body, session, scan)

    def _effective_label(self, policy: Policy, body: Mapping[str, Any], messages: list[Any],
                         extra_labels: Sequence[object]) -> tuple[Label, ScanResult]:
        labels = [conversation_label(body, policy.conversation_label)]
        labels += document_labels(body)
        labels += [label_of_item(x, param="labels") for x in extra_labels]
        texts = message_texts(messages)
        for name, value in _text_fields(body).items():
            texts += field_texts(name, value)
        texts = scan_forms(texts)  # a JSON-escaped tool result is read as the provider's model reads it
        labels += policy.marker_labels(texts)
        for source in self._label_sources:
            labels += [label_of_item(x) for x in source(body)]
        scan = self._redactor.inspect(texts)
        if scan.kinds:
            labels.append(policy.pii_label)
        return max_label(labels), scan

    def _finish(self, model: str, decision: Decision, body: Mapping[str, Any], actor: Actor | None,
                routed_body: dict[str, Any] | None = None, session: RedactionSession | None = None,
                scan: ScanResult | None = None) -> RoutedRequest:
        session = session or RedactionSession()
        if not decision.goes_out:
            local = dict(body)
            local["model"] = self._local_model()
            routed_body = local
        assert routed_body is not None
        routed = RoutedRequest(model, decision, routed_body, session, dict(scan.kinds) if scan else {},
                               dict(scan.secrets) if scan else {})
        self._record(routed, actor)
        if decision.egress == "refused":
            raise PermissionDenied(f"The request for '{model}' was refused: {decision.reason}.",
                                   code="egress_refused", param="model")
        return routed

    def _record(self, routed: RoutedRequest, actor: Actor | None) -> None:
        d = routed.decision
        event = SecurityEvent(
            action=EGRESS_DECISION,
            actor_key_id=actor.key_id if actor else None,
            actor_user_id=actor.user_id if actor else None,
            resource=routed.requested_model,
            outcome="success" if d.goes_out else "denied",
            details={"destination": d.destination, "egress": d.egress, "provider": d.provider.name
                     if d.provider else None, "label": d.label.value if d.label else None, "reason": d.reason,
                     "redactions": routed.session.report(),
                     # A list, not a map: kind names such as SECRET must not look like detail keys.
                     "pii_found": [{"kind": k, "count": n} for k, n in sorted(routed.pii_found.items())],
                     "secrets_found": [{"kind": k, "count": n} for k, n in sorted(routed.secrets_found.items())]},
        )
        try:
            self._audit.record(event)
        except Exception as exc:
            # An egress decision that cannot be audited does not happen.
            log.error("egress decision for %s not audited: %s", routed.requested_model, exc)
            raise Unavailable("The audit log is unavailable; the request was not processed.",
                              code="audit_unavailable") from exc


def conversation_label(body: Mapping[str, Any], default: Label) -> Label:
    """``inhouse.label`` or ``metadata.label`` (the stricter if both), else ``default``."""
    found: list[Label] = []
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and meta.get("label") is not None:
        found.append(parse_label(meta["label"], param="metadata.label"))
    ext = body.get("inhouse")
    if isinstance(ext, Mapping) and ext.get("label") is not None:
        found.append(parse_label(ext["label"], param="inhouse.label"))
    return max_label(found, default=default)


def _text_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The forwarded fields besides the messages that carry text, ``tool_choice`` reduced to the shapes the API
    defines (a mode, or the function to call by name): anything else in it would go out unread."""
    out = {k: body[k] for k in _TEXT_FIELDS if k in body}
    choice = out.get("tool_choice")
    if choice is None or choice in _TOOL_CHOICES:
        return out
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if not (isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(function, Mapping)
            and isinstance(function.get("name"), str)):
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or "
                             "{'type': 'function', 'function': {'name': …}}.", param="tool_choice")
    out["tool_choice"] = {"type": "function", "function": {"name": function["name"]}}
    return out


def document_labels(body: Mapping[str, Any]) -> list[Label]:
    """Labels of ``inhouse.documents``; a document without a label is confidential."""
    ext = body.get("inhouse")
    docs = ext.get("documents") if isinstance(ext, Mapping) else None
    if docs is None:
        return []
    if not isinstance(docs, list):
        raise InvalidRequest("'inhouse.documents' must be a list.", param="inhouse.documents")
    return [label_of_item(d.get("label") if isinstance(d, Mapping) else None, param="inhouse.documents")
            for d in docs]



def build_egress_router(settings: GovernanceSettings, data_dir: Path, audit: AuditSink, *,
                        is_local: Callable[[str], bool], local_model: Callable[[], str],
                        names: Callable[[], Iterable[str]] = tuple,
                        label_sources: Sequence[LabelSource] = ()) -> EgressRouter:
    """The router from the governance settings; ``names`` yields directory names to redact."""
    configured = tuple(settings.redact_names)
    redactor = Redactor(names=lambda: (*configured, *names()), score_threshold=settings.pii_score_threshold,
                        internal_domains=settings.internal_domains)
    policies = PolicyStore(settings.policy_file or data_dir / "policy.toml")
    return EgressRouter(policies, redactor, audit, is_local=is_local, local_model=local_model,
                        on_failure=settings.on_policy_failure, label_sources=label_sources)
