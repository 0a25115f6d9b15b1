"""Does the OS let this process use Intel AMX tiles?

AMX tile data is 8 KB of register state per thread. Linux (5.16+) keeps it disabled until a process asks for
it with ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``; a tile instruction without that permission
raises a fault. llama.cpp asks when its AMX buffer type is first created and silently drops the buffer type
when refused. This module asks the same question through the raw syscall (ctypes), so the answer is shown
by ``inhouse doctor`` next to what the CPU advertises and what llama.cpp actually ran.

Asking is harmless: the permission only allows the state to be allocated when a thread first uses it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from dataclasses import dataclass

_SYS_ARCH_PRCTL = 158  # x86-64
ARCH_GET_XCOMP_SUPP = 0x1021
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


@dataclass(frozen=True)
class TilePermission:
    status: str  # "granted" | "refused" | "unsupported" (the kernel/CPU has no AMX state) | "unknown"
    detail: str

    @property
    def granted(self) -> bool:
        return self.status == "granted"


def _arch_prctl(libc: ctypes.CDLL, code: int, arg: int | ctypes.c_uint64) -> tuple[int, int]:
    ref = ctypes.byref(arg) if isinstance(arg, ctypes.c_uint64) else ctypes.c_ulong(arg)
    rc = libc.syscall(_SYS_ARCH_PRCTL, code, ref)
    return rc, ctypes.get_errno() if rc != 0 else 0


def tile_permission() -> TilePermission:
    """Ask the kernel for AMX tile state for this process and say what it answered."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return TilePermission("unsupported", f"not Linux x86-64 ({platform.system()} {platform.machine()})")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:  # pragma: no cover - every glibc system has a libc
        return TilePermission("unknown", f"no libc to call arch_prctl ({exc})")
    libc.syscall.restype = ctypes.c_long
    supported = ctypes.c_uint64(0)
    rc, err = _arch_prctl(libc, ARCH_GET_XCOMP_SUPP, supported)
    if rc != 0:
        return TilePermission("unsupported", f"the kernel does not manage extended AMX state "
                                             f"(ARCH_GET_XCOMP_SUPP: {errno.errorcode.get(err, err)}; Linux < 5.16?)")
    if not supported.value >> XFEATURE_XTILEDATA & 1:
        return TilePermission("unsupported", "the CPU (as the kernel sees it) has no AMX tile state")
    rc, err = _arch_prctl(libc, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    if rc != 0:
        return TilePermission("refused", f"arch_prctl(ARCH_REQ_XCOMP_PERM) was refused: "
                                         f"{errno.errorcode.get(err, err)} ({os.strerror(err)})")
    granted = ctypes.c_uint64(0)
    rc, err = _arch_prctl(libc, ARCH_GET_XCOMP_PERM, granted)
    if rc != 0 or not granted.value >> XFEATURE_XTILEDATA & 1:
        return TilePermission("refused", "the kernel accepted the request but does not list tile data as "
                                         "permitted (ARCH_GET_XCOMP_PERM)")
    return TilePermission("granted", "the kernel grants this process AMX tile state")
