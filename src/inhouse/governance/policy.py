"""The egress policy: which external providers exist and the most sensitive data each may receive.

Loaded from a TOML file (``governance.policy_file``, default ``<data_dir>/policy.toml``)::

    [defaults]
    conversation_label = "public"   # a chat that declares no label
    pii_label = "internal"          # found PII raises the effective label to at least this
    on_secret = "refuse"            # a secret in the messages: refuse (403) or "local"; default: the provider's
                                    # on_refusal. Secrets never go out, whatever the label allows.

    [[markers]]                     # content rules: text matching ``pattern`` is at least ``label``
    pattern = "(?i)\\bconfidential\\b|机密"
    label = "confidential"

    [[providers]]
    name = "cloud"
    base_url = "https://api.example.com/v1"   # OpenAI-compatible
    api_key_env = "CLOUD_API_KEY"              # the key is read from this variable, never from the file
    models = ["gpt-4o-mini"]
    max_label = "public"                       # sent as is up to this label
    max_label_after_redaction = "internal"     # sent after PII redaction up to this label
    on_refusal = "local"                       # above that: answer locally ("local") or refuse ("refuse")

``decide`` is a pure function of a provider and an effective label; ``PolicyStore`` re-reads the file
when it changes and raises ``Unavailable`` while it is unreadable or invalid, so callers fail closed.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inhouse.errors import Unavailable
from inhouse.governance.labels import Label, parse_label

Egress = Literal["local", "sent", "sent_redacted", "kept_local", "refused"]
OnRefusal = Literal["local", "refuse"]
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PolicyError(ValueError):
    """The policy file is invalid; the message says where."""


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str
    models: tuple[str, ...]
    max_label: Label = Label.PUBLIC
    max_label_after_redaction: Label | None = None
    on_refusal: OnRefusal = "local"
    timeout_s: float = 60.0

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


@dataclass(frozen=True)
class Marker:
    pattern: re.Pattern[str]
    label: Label


@dataclass(frozen=True)
class Policy:
    providers: tuple[Provider, ...] = ()
    conversation_label: Label = Label.PUBLIC
    pii_label: Label = Label.INTERNAL
    markers: tuple[Marker, ...] = ()
    on_secret: OnRefusal | None = None  # None: the provider's on_refusal
    _by_model: dict[str, Provider] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for p in self.providers:
            for m in p.models:
                if m in self._by_model:
                    raise PolicyError(f"model {m!r} is served by two providers")
                self._by_model[m] = p

    def provider_for(self, model: str) -> Provider | None:
        return self._by_model.get(model)

    def external_models(self) -> list[tuple[str, Provider]]:
        return sorted(self._by_model.items())

    def marker_labels(self, texts: Iterable[str]) -> list[Label]:
        """Labels of the content rules that match any of ``texts``."""
        found: list[Label] = []
        for marker in self.markers:
            if any(marker.pattern.search(t) for t in texts):
                found.append(marker.label)
        return found


@dataclass(frozen=True)
class Decision:
    """Where a request goes and why. ``label`` is None when it could not be computed (a failure)."""

    destination: str  # "local" or a provider name
    egress: Egress
    reason: str
    label: Label | None = None
    provider: Provider | None = None

    @property
    def goes_out(self) -> bool:
        return self.egress in ("sent", "sent_redacted")

    @property
    def redact(self) -> bool:
        return self.egress == "sent_redacted"


def decide(provider: Provider, label: Label) -> Decision:
    """The decision for data of ``label`` asked of ``provider`` (the label is already computed)."""
    if label <= provider.max_label:
        return Decision(provider.name, "sent", f"label {label} is within {provider.name}'s limit "
                        f"({provider.max_label})", label, provider)
    after = provider.max_label_after_redaction
    if after is not None and label <= after:
        return Decision(provider.name, "sent_redacted", f"label {label} may go to {provider.name} after PII "
                        f"redaction (limit {after})", label, provider)
    limit = after if after is not None and after > provider.max_label else provider.max_label
    reason = f"label {label} exceeds what {provider.name} may receive ({limit})"
    if provider.on_refusal == "local":
        return Decision("local", "kept_local", reason + "; answered by a local model", label, provider)
    return Decision("local", "refused", reason, label, provider)


def decide_secrets(provider: Provider, label: Label, secrets: Mapping[str, int],
                   on_secret: OnRefusal | None = None) -> Decision:
    """Messages holding secrets never go out, whatever the label allows: refused, or answered locally.
    The reason names the kinds of secret (``password``, ``private_key``…), never a value."""
    kinds = ", ".join(sorted(secrets)) or "secret"
    reason = f"the messages contain secrets ({kinds}), which are never sent to {provider.name}"
    if (on_secret or provider.on_refusal) == "local":
        return Decision("local", "kept_local", reason + "; answered by a local model", label, provider)
    return Decision("local", "refused", reason, label, provider)


def failure_decision(provider_name: str, what: str, on_failure: str) -> Decision:
    """Fail closed: nothing goes out; answer locally or refuse, as configured."""
    reason = f"{what}; nothing was sent to {provider_name or 'an external provider'}"
    if on_failure == "local":
        return Decision("local", "kept_local", reason + "; answered by a local model")
    return Decision("local", "refused", reason)


# -- loading ------------------------------------------------------------------------------------------------


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """A Policy from parsed TOML. Raises PolicyError naming the bad field."""
    unknown = set(data) - {"defaults", "markers", "providers"}
    if unknown:
        raise PolicyError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    defaults = _table(data.get("defaults", {}), "defaults")
    _only(defaults, {"conversation_label", "pii_label", "on_secret"}, "defaults")
    on_secret = defaults.get("on_secret")
    if on_secret is not None and on_secret not in ("local", "refuse"):
        raise PolicyError("defaults.on_secret must be 'local' or 'refuse'")
    markers = []
    for i, m in enumerate(_list(data.get("markers", []), "markers")):
        m = _table(m, f"markers[{i}]")
        _only(m, {"pattern", "label"}, f"markers[{i}]")
        try:
            rx = re.compile(_str(m.get("pattern"), f"markers[{i}].pattern"))
        except re.error as exc:
            raise PolicyError(f"markers[{i}].pattern: {exc}") from None
        markers.append(Marker(rx, _label(m.get("label"), f"markers[{i}].label")))
    providers = [_provider(p, i) for i, p in enumerate(_list(data.get("providers", []), "providers"))]
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise PolicyError("provider names must be unique")
    return Policy(
        providers=tuple(providers),
        conversation_label=_label(defaults.get("conversation_label", "public"), "defaults.conversation_label"),
        pii_label=_label(defaults.get("pii_label", "internal"), "defaults.pii_label"),
        markers=tuple(markers),
        on_secret=on_secret,
    )


def _provider(raw: Any, i: int) -> Provider:
    where = f"providers[{i}]"
    p = _table(raw, where)
    _only(p, {"name", "base_url", "api_key_env", "models", "max_label", "max_label_after_redaction",
              "on_refusal", "timeout_s"}, where)
    name = _str(p.get("name"), f"{where}.name")
    if not _NAME_RE.fullmatch(name) or name == "local":
        raise PolicyError(f"{where}.name must be 1-64 letters, digits, . _ - (and not 'local')")
    base_url = _str(p.get("base_url"), f"{where}.base_url").rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise PolicyError(f"{where}.base_url must be an http(s) URL")
    models = tuple(_str(m, f"{where}.models") for m in _list(p.get("models"), f"{where}.models"))
    if not models:
        raise PolicyError(f"{where}.models must name at least one model")
    on_refusal = p.get("on_refusal", "local")
    if on_refusal not in ("local", "refuse"):
        raise PolicyError(f"{where}.on_refusal must be 'local' or 'refuse'")
    timeout = p.get("timeout_s", 60.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        raise PolicyError(f"{where}.timeout_s must be a number of seconds in (0, 3600]")
    after = p.get("max_label_after_redaction")
    return Provider(
        name=name, base_url=base_url, api_key_env=_str(p.get("api_key_env"), f"{where}.api_key_env"),
        models=models, max_label=_label(p.get("max_label", "public"), f"{where}.max_label"),
        max_label_after_redaction=None if after is None else _label(after, f"{where}.max_label_after_redaction"),
        on_refusal=on_refusal, timeout_s=float(timeout),
    )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where} must be a table")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where} must be a list")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(table) - allowed
    if extra:
        raise PolicyError(f"{where}: unknown keys {', '.join(sorted(extra))}")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where} must be a non-empty string")
    return value.strip()


def _label(value: Any, where: str) -> Label:
    if not isinstance(value, str):
        raise PolicyError(f"{where} must be a label name")
    try:
        return parse_label(value)
    except Exception:
        raise PolicyError(f"{where}: unknown label {value!r}") from None


def load_policy(path: Path) -> Policy:
    """The policy in ``path``; a missing file is the empty policy (no external providers)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Policy()
    try:
        return parse_policy(tomllib.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"not valid TOML: {exc}") from None


class PolicyStore:
    """The current policy, re-read when the file changes (by mtime, size and inode).

    ``current()`` raises ``Unavailable`` (code ``policy_unavailable``) while the file cannot be read or
    parsed; it never falls back to an older version, because an edit that breaks the file may have been
    meant to make it stricter.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._policy: Policy | None = None
        self._error: str | None = None

    def current(self) -> Policy:
        with self._lock:
            try:
                st = self.path.stat()
                stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = None
            except OSError as exc:
                raise Unavailable(f"The egress policy file {self.path} cannot be read: {exc.strerror}.",
                                  code="policy_unavailable") from None
            if (self._policy is None and self._error is None) or stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._policy, self._error = load_policy(self.path), None
                except (OSError, PolicyError) as exc:
                    self._policy, self._error = None, str(exc)
            if self._error is not None or self._policy is None:
                raise Unavailable(f"The egress policy file {self.path} is invalid: {self._error}.",
                                  code="policy_unavailable")
            return self._policy
