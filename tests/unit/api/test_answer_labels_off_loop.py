"""The earlier answers' labels are looked up in every message (``AnswerLabels.of_history``: a digest per 16-token
window, a database read per 500): a chat request runs that lookup off the event loop, whatever its messages' roles.
A first-turn request of 330,000 CJK characters held the loop for seconds when only histories with an assistant turn
were sent to the threadpool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.governance.answer_labels import AnswerLabels

MODEL = "fake-model"


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Summarise our travel policy in one paragraph."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help you?"},
     {"role": "user", "content": "Shorter."}],
])
def test_the_answer_label_lookup_runs_off_the_event_loop(make_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                         messages: list[dict[str, str]]) -> None:
    on_loop: list[bool] = []
    real = AnswerLabels.of_history

    def spy(self: AnswerLabels, msgs: object) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop runs in this thread: a worker's
            on_loop.append(False)
        return real(self, msgs)

    monkeypatch.setattr(AnswerLabels, "of_history", spy)
    s = make_services()
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        resp = c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 2})
    assert resp.status_code == 200, resp.text
    assert on_loop and not any(on_loop)
