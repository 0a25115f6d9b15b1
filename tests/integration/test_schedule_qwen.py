"""The schedule assistant on a real model: Qwen2.5-Coder 0.5B, through its own chat template, calls create_event
for a natural-language request, and the event appears in the .ics export."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.ics import read_ics
from inhouse.apps.schedule.assistant import chat
from inhouse.apps.schedule.service import ScheduleService
from inhouse.types import Actor

pytestmark = pytest.mark.integration
QWEN = "qwen2.5-coder-0.5b"
BIN = Path(sys.executable).with_name("inhouse")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory,
             seed_pulled_model: Callable[[str, Path], None]) -> Iterator[Any]:
    from inhouse.bootstrap import build_services
    from inhouse.config import Settings

    data_dir = tmp_path_factory.mktemp("schedule-qwen")
    seed_pulled_model(QWEN, data_dir)
    pulled = subprocess.run([str(BIN), "models", "pull", QWEN, "--data-dir", str(data_dir)], capture_output=True,
                            text=True, timeout=900)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    s = build_services(Settings(data_dir=data_dir, kb={"embedder": "fake"}, engine={"n_ctx": 4096}))
    yield s
    s.close()


def test_qwen_creates_an_event_through_a_tool_call(services: Any) -> None:
    tz = ZoneInfo("Europe/Berlin")
    ctx = AppContext(actor=Actor("key_it", "integration", role="member", user_id=None), chat=services.chat,
                     model=QWEN, tz=tz, now=lambda: datetime(2026, 1, 28, 9, tzinfo=UTC), max_tokens=256)
    schedule = ScheduleService(services.stores.events, services.directory)
    reply = asyncio.run(chat(schedule, ctx, "Create an event titled 'Design review' on 2026-02-06 at 15:00 "
                             "for 60 minutes.", max_rounds=2))
    created = [a for a in reply.actions if a["tool"] == "create_event" and "error" not in a["result"]]
    assert created, reply.to_dict()
    items = read_ics(schedule.export_ics(ctx))
    assert any("design review" in i.summary.lower() for i in items), [i.summary for i in items]
    event = created[0]["result"]["event"]
    assert event["start"].startswith("2026-02-06T15:00"), event
