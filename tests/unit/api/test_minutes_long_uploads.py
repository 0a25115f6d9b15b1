"""``POST /v1/apps/minutes`` with uploads too long for the limits: a transcript with far more lines than
``apps.minutes_max_windows`` allows is refused before it is all parsed and windowed, and a recording that states a
length over ``apps.max_audio_s`` before it is decoded; both answer 400 in the one error shape."""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.apps.minutes import pipeline


@pytest.fixture
def client(make_services: Any) -> TestClient:
    s = make_services(settings={"apps": {"minutes_max_windows": 4, "max_audio_s": 60}})
    return TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"})


def test_a_transcript_far_over_the_window_limit_is_refused_while_parsing(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "build_windows", lambda *a, **k: pytest.fail("windows of a refused transcript"))
    data = b"A: x\n" * 200_000
    r = client.post("/v1/apps/minutes", files={"file": ("meeting.txt", data, "text/plain")})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == "file"
    assert "needs more than 4 windows" in error["message"]


def test_a_recording_stating_a_length_over_the_limit_is_refused_before_decoding(client: TestClient) -> None:
    """A second of silence in a FLAC whose header says five hours: decoding would call it silent instead."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream: Any = out.add_stream("flac", rate=8000)
        stream.layout, stream.format = "mono", "s16"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    raw = bytearray(buf.getvalue())
    fields = int.from_bytes(raw[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of sample count
    raw[18:26] = ((fields >> 36 << 36) | 5 * 3600 * 8000).to_bytes(8, "big")
    r = client.post("/v1/apps/minutes", files={"file": ("meeting.flac", bytes(raw), "audio/flac")})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == ("meeting.flac: the recording is 300 minutes long; at most 1 minutes are "
                                            "accepted.")
