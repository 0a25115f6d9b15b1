"""``AppContexts``: the context of one assistant call, from the settings as they are at call time."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.apps.context import AppContexts
from inhouse.config import Settings
from inhouse.errors import InvalidRequest
from inhouse.testing.fakes import build_fake_chat, build_fake_engine
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")


def test_model_and_zone_come_from_the_call_then_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.apps.model, settings.apps.timezone, settings.models.default = "assistant-model", "Asia/Shanghai", "d"
    contexts = AppContexts(settings, build_fake_chat(build_fake_engine()))
    ctx = contexts.for_actor(ANA)
    assert (ctx.actor, ctx.model, str(ctx.tz), ctx.kb) == (ANA, "assistant-model", "Asia/Shanghai", None)
    ctx = contexts.for_actor(ANA, timezone="Europe/Paris", model="other")
    assert (ctx.model, str(ctx.tz)) == ("other", "Europe/Paris")
    settings.apps.model = ""  # read at call time: no assistants' model set → the default model
    assert contexts.for_actor(ANA).model == "d"
    with pytest.raises(InvalidRequest):
        contexts.for_actor(ANA, timezone="Mars/Olympus")


def test_metered_calls_charge_the_callers_key(tmp_path: Path) -> None:
    charged: list[tuple[str, int]] = []
    contexts = AppContexts(Settings(data_dir=tmp_path), build_fake_chat(build_fake_engine()),
                           record_usage=lambda key, n: charged.append((key, n)))
    contexts.for_actor(ANA).record_usage(7)  # type: ignore[misc]
    assert contexts.for_actor(ANA, metered=False).record_usage is None  # the command line is not metered
    assert charged == [("key_ana", 7)]


def test_each_context_remembers_in_the_answer_labels_it_was_given(tmp_path: Path) -> None:
    answers = object()  # the server's AnswerLabels (bootstrap.py); None: nothing is remembered
    contexts = AppContexts(Settings(data_dir=tmp_path), build_fake_chat(build_fake_engine()),
                           answers=answers)  # type: ignore[arg-type]
    assert contexts.for_actor(ANA).answers is answers and contexts.for_actor(ANA, metered=False).answers is answers
    assert AppContexts(Settings(data_dir=tmp_path), build_fake_chat(build_fake_engine())).for_actor(ANA).answers is None
