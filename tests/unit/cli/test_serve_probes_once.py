"""`inhouse serve` asks the hardware probe before it builds the services, and the services take that probe: an
answer that could not be cached (a probe child gave none) was otherwise probed for a second time in full while the
server started (7.6 s, then 5.3 s on the 2-core box)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from inhouse.bootstrap import build_probe
from inhouse.cli.common import open_services
from inhouse.config import Settings
from inhouse.hardware.probe import HardwareProbe, PathResult, ProbeReport
from inhouse.testing.probe import fake_report


def test_the_services_take_the_probe_serve_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    unsettled = replace(fake_report("no_amx"), paths={
        "plain": PathResult("plain", "failed", "killed (SIGKILL, signal 9) during load"),
        "repack": PathResult("repack", "failed", "the plain path gave no reference to compare with"),
        "amx": PathResult("amx", "failed", "the plain path gave no reference to compare with")})
    runs: list[int] = []

    def run(self: HardwareProbe) -> ProbeReport:
        runs.append(1)
        return unsettled

    monkeypatch.setattr(HardwareProbe, "run", run)
    settings = Settings(data_dir=tmp_path)
    probe = build_probe(settings)
    assert not probe.current().settled and not probe.cache_path().exists()  # not cached: the next start asks again
    services = open_services(settings, probe)
    try:
        assert services.probe is probe and services.probe.current() is not None
    finally:
        services.close()
    assert runs == [1]
