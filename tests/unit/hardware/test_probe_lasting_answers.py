"""What the probe keeps across restarts: only lasting answers about this machine and build. A kill from outside,
a NaN reference, a malformed cache file or a changed AMX grant must not leave a stale or wrong answer behind."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import pytest

import inhouse.hardware.probe as probe_mod
from inhouse.hardware.amx import TilePermission
from inhouse.hardware.cpu import Bandwidth
from inhouse.hardware.probe import ChildOutcome, HardwareProbe, check_paths, interpret, relative_error
from inhouse.hardware.weights import auto_choice, resolve_weight_buffers
from inhouse.testing.probe import EPYC_FLAGS, XEON_FLAGS, ScriptedChildren, fake_report

LOGITS = [[float(i % 7) - 3.0 for i in range(64)], [float(i % 5) for i in range(64)]]
NAN = [[math.nan] * 64, [math.nan] * 64]


def answered(logits: list[list[float]] = LOGITS, placed: dict[str, float] | None = None) -> ChildOutcome:
    body = {"placed": placed or {"CPU_REPACK": 1.0}, "extra_buffer_types": list(placed or {"CPU_REPACK": 1.0}),
            "tokens": [3, 4], "logits": logits, "system_info": "CPU : AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |"}
    return ChildOutcome(0, json.dumps(body) + "\n", "phase=load\nphase=done\n", 0.1)


def killed(sig: int) -> ChildOutcome:
    return ChildOutcome(-sig, "", "phase=load\nphase=prefill\n", 3.0)


def probe(tmp_path: Path, children: ScriptedChildren, **kw: Any) -> HardwareProbe:
    kw.setdefault("memory", lambda: (16 * 2**30, 12 * 2**30))
    return HardwareProbe(tmp_path / "hw", run_child=children, build_id=lambda: ("b1", "0.3.36"),
                         bandwidth=lambda: Bandwidth(42.0, 1, 2, 1), cpu_signature=lambda: "cpu1", **kw)


@pytest.fixture
def permission(monkeypatch: pytest.MonkeyPatch) -> dict[str, TilePermission]:
    """The OS's AMX answer, as the probe asks for it (settable per test)."""
    now = {"value": TilePermission("unsupported", "no AMX tile state")}
    monkeypatch.setattr(probe_mod, "tile_permission", lambda: now["value"])
    return now


# -- a kill from outside is no answer (bug: SIGKILL refuted the path and was cached for ever) -------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_kill_from_outside_says_nothing_about_the_path(sig: int) -> None:
    result, _ = interpret("amx", killed(sig))
    assert result.status == "failed" and result.signal == sig and "during prefill" in result.detail
    for native in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGABRT):
        assert interpret("amx", killed(native))[0].status == "crashed"


def test_an_answer_with_a_failed_path_is_used_but_not_kept(tmp_path: Path, permission: object) -> None:
    children = ScriptedChildren({"plain": answered(placed={"CPU": 2.0}), "repack": answered(),
                                 "amx": killed(signal.SIGKILL)})
    p = probe(tmp_path, children)
    report = p.current()
    assert report.paths["amx"].status == "failed"
    assert resolve_weight_buffers("amx", report).value == "amx"  # not refuted: asking for it is allowed
    assert auto_choice(report).value == "repack"
    assert not p.cache_path().exists()
    assert p.current() == report and len(children.calls) == 3  # this process keeps it
    probe(tmp_path, children).current()  # the next start probes again
    assert len(children.calls) == 6


@pytest.mark.parametrize("plain", [answered(NAN), killed(signal.SIGSEGV)], ids=["plain NaN", "plain SIGSEGV"])
def test_a_plain_path_refuted_for_good_is_kept(tmp_path: Path, permission: object, plain: ChildOutcome) -> None:
    """The others then fail for lack of a reference, which asking again at every start would only repeat."""
    children = ScriptedChildren({"plain": plain, "repack": answered(), "amx": answered()})
    report = probe(tmp_path, children).current()
    assert report.paths["plain"].status in ("wrong", "crashed") and report.paths["repack"].status == "failed"
    probe(tmp_path, children).current()  # the next start
    assert len(children.calls) == 3


def test_a_refresh_that_fails_does_not_leave_the_older_answer_behind(tmp_path: Path, permission: object) -> None:
    good = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})
    probe(tmp_path, good).current()
    bad = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": killed(signal.SIGKILL)})
    p = probe(tmp_path, bad)
    assert p.current(force=True).paths["amx"].status == "failed"
    assert probe(tmp_path, good).cached() is None


# -- a NaN reference proves nothing (bug: NaN plain logits made every path "ok", within 0.0 %) -----------------


def test_non_finite_plain_logits_refute_plain_and_prove_no_other_path() -> None:
    assert relative_error(LOGITS, NAN) == math.inf
    results = check_paths({"plain": answered(NAN), "repack": answered(), "amx": answered()})
    assert results["plain"].status == "wrong" and "not finite" in results["plain"].detail
    assert results["repack"].status == "failed" and "reference" in results["repack"].detail
    assert results["amx"].status == "failed"
    inf = [[math.inf, *row[1:]] for row in LOGITS]
    assert check_paths({"plain": answered(inf)})["plain"].status == "wrong"


# -- a malformed cache is absent (bug: "paths" as a list escaped as AttributeError) ----------------------------


@pytest.mark.parametrize("damage", [
    lambda d: {**d, "paths": []},
    lambda d: {**d, "paths": {"plain": ["ok"]}},
    lambda d: {**d, "amx_os": "granted"},
    lambda d: [d],
    lambda d: None,
])
def test_a_malformed_cache_is_probed_again(tmp_path: Path, damage: Any, permission: object) -> None:
    children = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})
    p = probe(tmp_path, children)
    p.cache_path().parent.mkdir(parents=True)
    p.cache_path().write_text(json.dumps(damage(fake_report("no_amx").to_dict())), encoding="utf-8")
    assert p.cached() is None
    assert p.current().works("plain") and len(children.calls) == 3


# -- a changed AMX grant is probed again (bug: the cache outlived a kernel upgrade) ----------------------------


def test_a_changed_amx_permission_is_probed_again(tmp_path: Path, permission: dict[str, TilePermission],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "read_isa", lambda: ("GenuineIntel", dict(XEON_FLAGS)))
    before = ScriptedChildren({"plain": answered(placed={"CPU": 2.0}), "repack": answered(), "amx": answered()})
    assert not probe(tmp_path, before).current().amx_in_use
    assert probe(tmp_path, before).current().amx_os.status == "unsupported" and len(before.calls) == 3  # cached
    permission["value"] = TilePermission("granted", "the kernel grants this process AMX tile state")
    after = ScriptedChildren({"plain": answered(placed={"CPU": 2.0}), "repack": answered(),
                              "amx": answered(placed={"AMX": 2.0})})
    report = probe(tmp_path, after).current()
    assert len(after.calls) == 3 and report.amx_os.granted and report.amx_in_use
    assert probe(tmp_path, after).current() == report and len(after.calls) == 3  # and that answer is kept


def test_without_amx_on_the_cpu_the_grant_is_not_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "read_isa", lambda: ("AuthenticAMD", dict(EPYC_FLAGS)))
    monkeypatch.setattr(probe_mod, "tile_permission", lambda: pytest.fail("asked for AMX tile state"))
    p = probe(tmp_path, ScriptedChildren({}))
    p.cache_path().parent.mkdir(parents=True)
    p.cache_path().write_text(json.dumps(fake_report("no_amx").to_dict()), encoding="utf-8")
    assert p.cached() is not None


# -- memory is read when the answer is read (bug: a smaller container limit kept the cached figure) -----------


def test_the_cached_answer_carries_the_memory_read_now(tmp_path: Path, permission: object) -> None:
    children = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})
    assert probe(tmp_path, children, memory=lambda: (64 * 2**30, 60 * 2**30)).current().memory_total_bytes \
        == 64 * 2**30
    p = probe(tmp_path, children, memory=lambda: (2 * 2**30, 1 * 2**30))
    report = p.current()
    assert len(children.calls) == 3  # the cached answer, not a probe
    assert (report.memory_total_bytes, report.memory_available_bytes) == (2 * 2**30, 1 * 2**30)
    assert p.current().memory_total_bytes == 2 * 2**30  # the in-process copy too
