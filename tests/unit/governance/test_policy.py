from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from inhouse.errors import Unavailable
from inhouse.governance.labels import Label
from inhouse.governance.policy import PolicyError, PolicyStore, Provider, decide, failure_decision, parse_policy

POLICY = """
[defaults]
conversation_label = "public"
pii_label = "internal"

[[markers]]
pattern = "(?i)\\\\bconfidential\\\\b|机密"
label = "confidential"

[[providers]]
name = "cloud"
base_url = "https://api.example.com/v1/"
api_key_env = "CLOUD_KEY"
models = ["gpt-x", "gpt-y"]
max_label = "public"
max_label_after_redaction = "internal"
on_refusal = "local"
"""


def provider(max_label: str = "public", after: str | None = "internal", on_refusal: str = "local") -> Provider:
    return Provider("cloud", "https://x/v1", "K", ("m",), Label(max_label),
                    Label(after) if after else None, on_refusal)  # type: ignore[arg-type]


@pytest.mark.parametrize(("max_label", "after", "on_refusal", "label", "egress", "destination"), [
    ("public", "internal", "local", "public", "sent", "cloud"),
    ("public", "internal", "local", "internal", "sent_redacted", "cloud"),
    ("public", "internal", "local", "confidential", "kept_local", "local"),
    ("public", "internal", "refuse", "confidential", "refused", "local"),
    ("public", "internal", "refuse", "restricted", "refused", "local"),
    ("public", None, "refuse", "internal", "refused", "local"),
    ("internal", None, "local", "internal", "sent", "cloud"),
    ("internal", "confidential", "local", "confidential", "sent_redacted", "cloud"),
    ("internal", "public", "local", "public", "sent", "cloud"),  # a lower redaction ceiling never widens
    ("internal", "public", "refuse", "confidential", "refused", "local"),
    ("restricted", None, "refuse", "restricted", "sent", "cloud"),
])
def test_decision_table(max_label: str, after: str | None, on_refusal: str, label: str, egress: str,
                        destination: str) -> None:
    d = decide(provider(max_label, after, on_refusal), Label(label))
    assert (d.egress, d.destination) == (egress, destination)
    assert d.goes_out == (egress in ("sent", "sent_redacted"))
    assert label in d.reason and d.label is Label(label)


@pytest.mark.parametrize(("on_failure", "egress"), [("refuse", "refused"), ("local", "kept_local")])
def test_failure_decision_never_goes_out(on_failure: str, egress: str) -> None:
    d = failure_decision("cloud", "the redactor failed", on_failure)
    assert d.egress == egress and not d.goes_out and d.destination == "local"
    assert "redactor failed" in d.reason and "nothing was sent" in d.reason


def test_parse_policy() -> None:
    import tomllib

    policy = parse_policy(tomllib.loads(POLICY))
    p = policy.provider_for("gpt-y")
    assert p is not None and p.name == "cloud" and p.base_url == "https://api.example.com/v1"
    assert p.max_label is Label.PUBLIC and p.max_label_after_redaction is Label.INTERNAL
    assert policy.provider_for("smollm2-135m") is None
    assert [m for m, _ in policy.external_models()] == ["gpt-x", "gpt-y"]
    assert policy.marker_labels(["This is CONFIDENTIAL."]) == [Label.CONFIDENTIAL]
    assert policy.marker_labels(["公司机密"]) == [Label.CONFIDENTIAL]
    assert policy.marker_labels(["nothing to see"]) == []


@pytest.mark.parametrize(("data", "where"), [
    ({"providers": [{"name": "c", "base_url": "https://x", "api_key_env": "K", "models": ["m"],
                     "max_label": "secret"}]}, "max_label"),
    ({"providers": [{"name": "c", "base_url": "ftp://x", "api_key_env": "K", "models": ["m"]}]}, "base_url"),
    ({"providers": [{"name": "c", "base_url": "https://x", "api_key_env": "K", "models": []}]}, "models"),
    ({"providers": [{"name": "c", "base_url": "https://x", "api_key_env": "K", "models": ["m"],
                     "api_key": "sk-inline"}]}, "unknown keys"),
    ({"providers": [{"name": "local", "base_url": "https://x", "api_key_env": "K", "models": ["m"]}]}, "name"),
    ({"providers": [{"name": "a", "base_url": "https://x", "api_key_env": "K", "models": ["m"]},
                    {"name": "b", "base_url": "https://y", "api_key_env": "K", "models": ["m"]}]}, "two providers"),
    ({"markers": [{"pattern": "(", "label": "internal"}]}, "markers[0].pattern"),
    ({"surprise": 1}, "unknown top-level"),
    ({"defaults": {"on_secret": "send"}}, "defaults.on_secret"),
])
def test_invalid_policies_say_where(data: dict[str, object], where: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert where in str(info.value)


def test_store_missing_file_is_the_empty_policy(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "policy.toml")
    assert store.current().providers == ()


def test_store_fails_closed_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    store = PolicyStore(path)
    assert store.current().provider_for("gpt-x") is not None
    path.write_text(POLICY + "\n[[providers]\nbroken = ")
    _bump(path)
    with pytest.raises(Unavailable) as info:
        store.current()
    assert info.value.code == "policy_unavailable"
    with pytest.raises(Unavailable):  # still broken: no fallback to the last good version
        store.current()
    path.write_text(POLICY.replace('"public"\nmax_label_after', '"internal"\nmax_label_after'))
    _bump(path)
    p = store.current().provider_for("gpt-x")
    assert p is not None and p.max_label is Label.INTERNAL
    path.write_bytes(b"\xff\xfe not utf-8")
    _bump(path)
    with pytest.raises(Unavailable):
        store.current()


def test_store_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.mkdir()  # a directory where the file should be: reading fails
    with pytest.raises(Unavailable):
        PolicyStore(path).current()


def _bump(path: Path) -> None:
    # Make the change visible even on filesystems with coarse mtimes.
    t = time.time() + 5
    os.utime(path, (t, t))
