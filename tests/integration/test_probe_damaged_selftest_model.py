"""The real probe over a damaged self-test model: the file its child wrote, cut short afterwards (a data directory
copied between machines, a disk error). Before the fix every child failed at load, in doctor, doctor --refresh and
serve alike, for good; now the probe finds it differs from its recorded digest and the first child writes it again."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.hardware.probe import HardwareProbe

pytestmark = pytest.mark.integration


def test_a_truncated_self_test_model_is_written_again(tmp_path: Path) -> None:
    probe = HardwareProbe(tmp_path / "hw")
    first = probe.current(force=True)
    assert first.works("plain"), first.path_lines()
    [model] = probe.directory.glob("selftest-*.gguf")
    whole = model.read_bytes()
    assert model.with_name(model.name + ".sha256").is_file()
    model.write_bytes(whole[:1_000_000])
    again = HardwareProbe(tmp_path / "hw").current(force=True)
    assert again.works("plain") and again.works("repack"), again.path_lines()
    assert model.read_bytes() == whole
