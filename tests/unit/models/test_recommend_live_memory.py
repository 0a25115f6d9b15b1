"""models.default = "auto" judges memory as it is now: a cached probe answer from a roomier start (same CPU, same
llama.cpp build, a smaller container limit today) must not pick a model that no longer fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inhouse.hardware.probe as probe_mod
from inhouse.hardware.amx import TilePermission
from inhouse.hardware.cpu import Bandwidth
from inhouse.hardware.probe import ChildOutcome, HardwareProbe
from inhouse.models.recommend import recommend_model
from inhouse.testing.probe import ScriptedChildren

GiB = 2**30
_BODY = {"placed": {"CPU_REPACK": 1.0}, "extra_buffer_types": ["CPU_REPACK"], "tokens": [1],
         "logits": [[1.0, 2.0, 3.0]], "system_info": "CPU : AVX2 = 1 | REPACK = 1 |"}
_OK = ChildOutcome(0, json.dumps(_BODY) + "\n", "phase=done\n", 0.1)


def test_a_smaller_container_later_gets_a_smaller_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "tile_permission", lambda: TilePermission("unsupported", "no AMX"))
    children = ScriptedChildren({"plain": _OK, "repack": _OK, "amx": _OK})

    def start(total_gib: float) -> HardwareProbe:
        return HardwareProbe(tmp_path / "hw", run_child=children, build_id=lambda: ("b1", "0.3.36"),
                             bandwidth=lambda: Bandwidth(45.0, 1, 2, 1), cpu_signature=lambda: "cpu1",
                             memory=lambda: (int(total_gib * GiB), int(total_gib * GiB)))

    assert recommend_model(start(64).current()).name == "qwen2.5-coder-1.5b"
    smaller = recommend_model(start(3).cached())  # as bootstrap does it: the cached answer, no probe
    assert len(children.calls) == 3
    assert smaller.name == "qwen2.5-coder-0.5b" and "this machine has 3.2 GB" in smaller.reason
