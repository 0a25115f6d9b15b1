"""Meta-tests: the settings page is generated from the settings model and must stay in sync."""

from __future__ import annotations

from pathlib import Path

from inhouse.config import render_settings_doc

ROOT = Path(__file__).resolve().parents[3]


def test_settings_doc_is_in_sync() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == render_settings_doc(), "docs/settings.md is stale: run `python -m inhouse.config > docs/settings.md`"


def test_every_setting_has_a_description() -> None:
    for line in render_settings_doc().splitlines():
        if line.startswith("| `"):
            assert not line.rstrip().endswith("|  |"), f"undocumented setting: {line}"
