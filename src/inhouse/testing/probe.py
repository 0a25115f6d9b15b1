"""Faked hardware-probe answers, one per machine the engine must handle (tests of the fallback paths, and any
test that needs a probe answer without running llama.cpp children).

    fake_report("amx_works")      Xeon, AMX granted, the AMX path ran and agreed
    fake_report("amx_crashes")    Xeon, AMX advertised, the AMX child died of SIGSEGV in prefill (GCC 12 build)
    fake_report("amx_and_repack_crash")   both accelerated paths died: only plain is left
    fake_report("no_amx")         AMD EPYC / older Xeon: no AMX, the CPU repack works
    fake_report("os_refuses")     AMX advertised, the kernel refuses tile state: llama.cpp drops the AMX buffer
    fake_report("nothing_runs")   even the plain path crashed
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from inhouse.hardware.amx import TilePermission
from inhouse.hardware.probe import ISA_FLAGS, ChildOutcome, PathResult, ProbeReport

XEON_FLAGS = dict.fromkeys(ISA_FLAGS, True)
EPYC_FLAGS = {f: not f.startswith("amx") and f != "avx512_fp16" for f in ISA_FLAGS}
AMX_SYSTEM_INFO = "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
PLAIN_SYSTEM_INFO = "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | REPACK = 1 |"

_OK_AMX = PathResult("amx", "ok", placed={"CPU_Mapped": 2.5, "AMX": 2.0, "CPU_REPACK": 0.1},
                     extra_buffer_types=["AMX", "CPU_REPACK"], rel_error=0.012)
_OK_REPACK = PathResult("repack", "ok", placed={"CPU_Mapped": 2.5, "CPU_REPACK": 0.7},
                        extra_buffer_types=["CPU_REPACK"], rel_error=0.017)
_OK_REPACK_AS_AMX = PathResult("amx", "ok", placed={"CPU_Mapped": 2.5, "CPU_REPACK": 0.7},
                               extra_buffer_types=["CPU_REPACK"], rel_error=0.017)
_OK_PLAIN = PathResult("plain", "ok", placed={"CPU_Mapped": 2.5}, rel_error=0.0)


def _crash(name: str, phase: str = "prefill") -> PathResult:
    return PathResult(name, "crashed", f"general protection fault or invalid memory access (SIGSEGV, signal 11) "
                                       f"during {phase}", signal=int(signal.SIGSEGV), phase=phase)


SCENARIOS: dict[str, dict[str, Any]] = {
    "amx_works": {"isa": XEON_FLAGS, "os": "granted", "info": AMX_SYSTEM_INFO,
                  "paths": [_OK_AMX, _OK_REPACK, _OK_PLAIN]},
    "amx_crashes": {"isa": XEON_FLAGS, "os": "granted", "info": AMX_SYSTEM_INFO,
                    "paths": [_crash("amx"), _OK_REPACK, _OK_PLAIN]},
    "amx_and_repack_crash": {"isa": XEON_FLAGS, "os": "granted", "info": AMX_SYSTEM_INFO,
                             "paths": [_crash("amx"), _crash("repack"), _OK_PLAIN]},
    "no_amx": {"isa": EPYC_FLAGS, "os": "unsupported", "info": PLAIN_SYSTEM_INFO,
               "paths": [_OK_REPACK_AS_AMX, _OK_REPACK, _OK_PLAIN]},
    "os_refuses": {"isa": XEON_FLAGS, "os": "refused", "info": AMX_SYSTEM_INFO,
                   "paths": [_OK_REPACK_AS_AMX, _OK_REPACK, _OK_PLAIN]},
    "nothing_runs": {"isa": EPYC_FLAGS, "os": "unsupported", "info": PLAIN_SYSTEM_INFO,
                     "paths": [_crash("amx", "load"), _crash("repack", "load"), _crash("plain", "load")]},
}

_OS_DETAIL = {"granted": "the kernel grants this process AMX tile state",
              "refused": "arch_prctl(ARCH_REQ_XCOMP_PERM) was refused: EPERM (Operation not permitted)",
              "unsupported": "the CPU (as the kernel sees it) has no AMX tile state"}


def fake_report(scenario: str, *, memory_gb: float = 24.0, bandwidth_gb_s: float = 40.0,
                **overrides: Any) -> ProbeReport:
    """A probe answer for one of ``SCENARIOS``; ``overrides`` replace any ``ProbeReport`` field."""
    sc = SCENARIOS[scenario]
    xeon = sc["isa"] is XEON_FLAGS
    fields: dict[str, Any] = {
        "created_at": "2026-01-01T00:00:00Z",
        "cpu_vendor": "GenuineIntel" if xeon else "AuthenticAMD",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+" if xeon else "AMD EPYC",
        "cpu_signature": f"fake-{scenario}",
        "physical_cores": 2, "logical_cpus": 2,
        "memory_total_bytes": int(memory_gb * 1e9), "memory_available_bytes": int(memory_gb * 0.9e9),
        "bandwidth_gb_s": bandwidth_gb_s, "isa": dict(sc["isa"]),
        "amx_os": TilePermission(sc["os"], _OS_DETAIL[sc["os"]]),
        "build_id": "fakebuild", "build_version": "0.3.36+inhouse.test", "system_info": sc["info"],
        "paths": {p.weight_buffers: p for p in sc["paths"]},
    }
    fields.update(overrides)
    return ProbeReport(**fields)


class ScriptedChildren:
    """A ``ChildRunner`` for ``HardwareProbe``: answers each weight path with a scripted ``ChildOutcome`` and
    counts the calls (so tests see when the cache spared a probe)."""

    def __init__(self, outcomes: dict[str, ChildOutcome]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def __call__(self, weight_buffers: str, model_path: Path) -> ChildOutcome:
        self.calls.append(weight_buffers)
        return self.outcomes[weight_buffers]
