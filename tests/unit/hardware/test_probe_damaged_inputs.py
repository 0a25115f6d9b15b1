"""What the probe reads from disk may be damaged: its cache (a wrong-typed field, hand-edited or another version's)
is ignored and replaced like any malformed file, and its generated self-test model (cut short by a copy between
machines, a disk error) is checked against the digest recorded when it was written and written again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import inhouse.hardware.probe as probe_mod
from inhouse.hardware.amx import TilePermission
from inhouse.hardware.cpu import Bandwidth
from inhouse.hardware.probe import (
    ChildOutcome,
    HardwareProbe,
    ProbeReport,
    discard_damaged_selftest_model,
    record_selftest_model,
)
from inhouse.testing.probe import ScriptedChildren, fake_report

LOGITS = [[float(i % 7) - 3.0 for i in range(64)], [float(i % 5) for i in range(64)]]


def answered() -> ChildOutcome:
    body = {"placed": {"CPU_REPACK": 1.0}, "extra_buffer_types": ["CPU_REPACK"], "tokens": [3, 4], "logits": LOGITS,
            "system_info": "CPU : AVX2 = 1 | REPACK = 1 |"}
    return ChildOutcome(0, json.dumps(body) + "\n", "phase=load\nphase=done\n", 0.1)


def probe(tmp_path: Path, children: Any) -> HardwareProbe:
    return HardwareProbe(tmp_path / "hw", run_child=children, build_id=lambda: ("b1", "0.3.36"),
                         bandwidth=lambda: Bandwidth(42.0, 1, 2, 1), cpu_signature=lambda: "cpu1",
                         memory=lambda: (16 * 2**30, 12 * 2**30))


@pytest.fixture(autouse=True)
def no_amx_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "tile_permission", lambda: TilePermission("unsupported", "no AMX tile state"))


# -- the cache: every field of its declared type (bug: "isa": null crashed doctor and serve) -----------------------


@pytest.mark.parametrize("damage", [
    lambda d: d.update(isa=None),
    lambda d: d.update(isa={"avx2": "yes"}),
    lambda d: d.update(bandwidth_gb_s="42"),
    lambda d: d.update(physical_cores=2.5),
    lambda d: d.update(cpu_model=None),
    lambda d: d.update(system_info=7),
    lambda d: d["amx_os"].update(status=None),
    lambda d: d["paths"]["plain"].update(placed=None),
    lambda d: d["paths"]["plain"].update(tokens=["3"]),
    lambda d: d["paths"]["plain"].update(status=1),
    lambda d: d["paths"]["plain"].update(rel_error="0"),
    lambda d: d["paths"]["plain"].update(surprise=1),
    lambda d: d.pop("cpu_signature"),
])
def test_a_wrong_typed_field_is_a_malformed_cache(tmp_path: Path, damage: Any) -> None:
    doc = fake_report("no_amx").to_dict()
    damage(doc)
    with pytest.raises(ValueError):
        ProbeReport.from_dict(doc)
    children = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})
    p = probe(tmp_path, children)
    p.cache_path().parent.mkdir(parents=True)
    p.cache_path().write_text(json.dumps(doc), encoding="utf-8")
    assert p.cached() is None
    p.current()  # probed again, not crashed
    assert len(children.calls) == 3
    assert ProbeReport.from_dict(json.loads(p.cache_path().read_text())).works("plain")  # and replaced


def test_the_written_report_and_older_ones_still_read() -> None:
    report = fake_report("amx_works")
    assert ProbeReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    older = report.to_dict()
    del older["bandwidth_foreign_cores"]  # written before the field existed
    older["paths"]["plain"]["seconds"] = 1  # an integer where a float is declared is still a number
    assert ProbeReport.from_dict(older).bandwidth_foreign_cores == 0.0


# -- the self-test model (bug: a truncated copy failed every child at load, doctor, --refresh and serve, for good) --


def test_a_damaged_self_test_model_is_discarded_before_the_first_child(tmp_path: Path) -> None:
    seen: list[bool] = []

    def children(weight_buffers: str, model: Path) -> ChildOutcome:
        if weight_buffers == "plain":
            seen.append(model.exists())
            if not model.exists():  # what the real child does: write it, and record its digest
                model.write_bytes(b"GGUF whole model")
                record_selftest_model(model)
        return answered()

    p = probe(tmp_path, children)
    model = p.directory / "selftest-b1.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF whole model")
    record_selftest_model(model)
    assert p.current(force=True).works("plain") and seen == [True]  # intact: kept
    model.write_bytes(b"GGUF who")  # cut short
    assert p.current(force=True).works("plain") and seen == [True, False]  # damaged: written again
    assert model.read_bytes() == b"GGUF whole model"
    assert p.current(force=True).works("plain") and seen == [True, False, True]


def test_a_model_without_a_recorded_digest_is_written_again(tmp_path: Path) -> None:
    model = tmp_path / "selftest-b1.gguf"
    assert not discard_damaged_selftest_model(model)  # nothing there: nothing to do
    model.write_bytes(b"from an older version, no digest")
    assert discard_damaged_selftest_model(model) and not model.exists()
    model.write_bytes(b"GGUF")
    record_selftest_model(model)
    assert not discard_damaged_selftest_model(model) and model.exists()
    model.with_name(model.name + ".sha256").write_text("0" * 64)
    assert discard_damaged_selftest_model(model) and not model.exists()
