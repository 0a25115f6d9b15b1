"""`inhouse minutes` end to end on a real model (Qwen2.5-Coder 0.5B, what CI has): a short English meeting gives
valid minutes whose every kept item points at a transcript line that supports it, and an .ics that parses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from inhouse.apps.ics import read_ics
from inhouse.apps.minutes.verify import supports

pytestmark = pytest.mark.integration
QWEN = "qwen2.5-coder-0.5b"
BIN = Path(sys.executable).with_name("inhouse")
MEETING = """Meeting: Website refresh
Date: 2026-10-28
Attendees: Anna Berg, Tom Li

[00:00] Anna Berg: Decision: we launch the new website on November 16.
[00:40] Tom Li: I will migrate the blog posts by next Friday.
[01:10] Anna Berg: Tom, please also check the contact form before the launch.
[01:30] Tom Li: OK. Next sync is November 4 at 10:00.
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, seed_pulled_model: Callable[[str, Path], None]) -> Path:
    d = tmp_path_factory.mktemp("minutes-qwen")
    seed_pulled_model(QWEN, d)
    pulled = subprocess.run([str(BIN), "models", "pull", QWEN, "--data-dir", str(d)], capture_output=True,
                            text=True, timeout=900)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    return d


@pytest.mark.timeout(1300)  # two CLI runs of up to 600 s each (their own timeouts); ~1 min each when quiet
def test_minutes_cli_on_qwen(data_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "website.txt"
    src.write_text(MEETING, encoding="utf-8")
    env_args = ["--model", QWEN, "--data-dir", str(data_dir)]
    done = subprocess.run([str(BIN), "minutes", str(src), "--format", "json", *env_args], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    minutes = json.loads(done.stdout)
    assert minutes["meeting_date"] == "2026-10-28" and minutes["attendees"] == ["Anna Berg", "Tom Li"]
    lines = MEETING.split("\n\n", 1)[1].strip().split("\n")
    kept = [(d["text"], d["evidence"]) for d in minutes["decisions"]]
    kept += [(a["task"], a["evidence"]) for a in minutes["action_items"]]
    for text, evidence in kept:  # evidence support is 100% by construction: check it holds on a real model
        assert evidence and all(1 <= e["line"] <= len(lines) for e in evidence)
        assert any(supports(text, f"{e['speaker']} {e['text']}") for e in evidence), (text, evidence)
    for item in minutes["action_items"]:
        assert item["owner"] in (None, "Anna Berg", "Tom Li")
    ics = subprocess.run([str(BIN), "minutes", str(src), "--format", "ics", *env_args], capture_output=True,
                         text=True, timeout=600)
    assert ics.returncode == 0, ics.stderr
    assert all(i.kind in ("VTODO", "VEVENT") for i in read_ics(ics.stdout))
