"""Memory read bandwidth, measured with numpy in the same run as the decode figures.

Decoding one token reads (almost) every weight once, so ``model bytes × tok/s`` is the bandwidth the
decoder pulls; dividing by what a plain streaming read achieves gives the fraction of the roofline.
numpy's ``sum`` releases the GIL, so the array is summed in one slice per thread to use every core the
way llama.cpp does; the single-thread figure is kept too because one core alone often cannot saturate
the memory controller.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class BandwidthResult:
    array_bytes: int
    single_thread_gb_s: float
    multi_thread_gb_s: float
    threads: int

    @property
    def best_gb_s(self) -> float:
        return max(self.single_thread_gb_s, self.multi_thread_gb_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "best_gb_s": self.best_gb_s}


def measure_read_bandwidth(size_bytes: int = 1 << 30, repeats: int = 5, threads: int = 2) -> BandwidthResult:
    """Best-of-``repeats`` GB/s (1e9 bytes/s) of summing a float32 array of ``size_bytes``."""
    import numpy as np

    n = size_bytes // 4
    arr = np.ones(n, dtype=np.float32)  # touching every page now keeps page faults out of the timing
    arr.sum()  # warm: page tables and the sum kernel
    best_single = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        arr.sum()
        dt = time.perf_counter() - t0
        best_single = max(best_single, arr.nbytes / dt / 1e9)

    slices = [arr[i * n // threads : (i + 1) * n // threads] for i in range(threads)]
    best_multi = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(lambda s: s.sum(), slices))
            dt = time.perf_counter() - t0
            best_multi = max(best_multi, arr.nbytes / dt / 1e9)
    del arr, slices
    return BandwidthResult(
        array_bytes=n * 4, single_thread_gb_s=best_single, multi_thread_gb_s=best_multi, threads=threads
    )
