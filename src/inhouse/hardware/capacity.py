"""The capacity model: what a CPU box serves for a model size and quantization, from two ceilings.

Decoding one step reads every weight once (the embedding table aside) and the KV cache of every running
sequence, and computes 2 × parameters FLOPs per token in the batch. So a step of ``B`` streams takes

    t(B) = max( read_bytes / W , 1 / D )  +  (B − 1) × 2 × params / (e_b × F)  +  B × ctx × kv_bytes / W

    W  = e_m × memory read bandwidth           (what llama.cpp's decode streams; e_m ≈ 0.85)
    D  = cores × decode rate per core / read_bytes   (a compute ceiling on single-stream decode; high on
                                                      AVX-512, so on most boxes bandwidth decides)
    F  = cores × prefill FLOP/s per core       (matrix-matrix rate, measured from prefill)
    e_b = batched-decode efficiency            (a batch of a few tokens multiplies matrices far less
                                                efficiently than a 512-token prefill)

Single-stream decode is ``1 / t(1)``; the users served at a per-user rate ``r`` are the largest ``B`` with
``1 / t(B) ≥ r``; their aggregate is ``B / t(B)``. Prefill is ``F / (2 × params)``. RAM is weights + KV
cache at ``n_ctx`` + llama.cpp's compute buffer + the server itself.

The coefficients (``Calibration``) are measured on one machine (docs/capacity.md says which and how) and
transfer to another machine through its core count, its measured bandwidth and its instruction set; the
prediction is checked against every shape measured here. Pure functions: no I/O, no measurement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

GB = 1e9
SERVER_OVERHEAD_BYTES = 400 * 2**20  # the Python server, tokenizer tables, sampler: measured ~0.3-0.4 GB


@dataclass(frozen=True)
class ModelSize:
    """One model size in one quantization, as the capacity model needs it."""

    label: str  # "7B"
    quant: str  # "Q4_K_M"
    params: float  # parameters
    weight_bytes: int  # file's tensor bytes
    read_bytes: int  # bytes one decode step reads (weights minus the embedding table)
    kv_bytes_per_token: int  # f16 KV cache per token of context, all layers
    compute_bytes: int = 600 * 2**20  # llama.cpp's compute buffer at n_ctx 8192, n_ubatch 512, no flash attn

    @property
    def name(self) -> str:
        return f"{self.label} {self.quant}"


@dataclass(frozen=True)
class Calibration:
    """Per-machine-class coefficients (see the module docstring)."""

    bandwidth_efficiency: float = 0.85  # e_m
    prefill_gflops_per_core: Mapping[str, float] = field(default_factory=dict)  # by quant, matrix-matrix
    decode_gb_s_per_core: Mapping[str, float] = field(default_factory=dict)  # by quant; absent = no ceiling
    batch_efficiency: float = 0.4  # e_b
    batch_efficiency_by_quant: Mapping[str, float] = field(default_factory=dict)  # overrides e_b per quant

    def batch(self, quant: str) -> float:
        return self.batch_efficiency_by_quant.get(quant.upper(), self.batch_efficiency)

    def prefill_flops(self, quant: str, cores: int) -> float:
        per_core = self.prefill_gflops_per_core.get(quant.upper())
        if per_core is None:
            per_core = min(self.prefill_gflops_per_core.values(), default=100.0)
        return cores * per_core * 1e9


@dataclass(frozen=True)
class Machine:
    cores: int  # physical cores llama.cpp runs on
    bandwidth_gb_s: float  # measured read bandwidth with all cores (1e9 bytes/s)
    label: str = ""


@dataclass(frozen=True)
class CapacityRow:
    model: str
    machine: str
    decode_tok_s: float  # one stream
    prefill_tok_s: float
    users: int  # concurrent streams each at >= the per-user rate
    aggregate_tok_s: float  # tokens/s of those users together
    per_user_tok_s: float  # the rate each of them gets
    ram_bytes: int
    bound: str  # what limits single-stream decode: "bandwidth" or "compute"


def _mem_rate(m: Machine, cal: Calibration) -> float:
    return cal.bandwidth_efficiency * m.bandwidth_gb_s * GB


def first_token_s(model: ModelSize, m: Machine, cal: Calibration) -> tuple[float, str]:
    """Time of a one-stream decode step with an empty context, and which ceiling decides it."""
    t_mem = model.read_bytes / _mem_rate(m, cal)
    per_core = cal.decode_gb_s_per_core.get(model.quant.upper())
    t_cpu = model.read_bytes / (m.cores * per_core * GB) if per_core else 0.0
    return (t_mem, "bandwidth") if t_mem >= t_cpu else (t_cpu, "compute")


def step_s(model: ModelSize, m: Machine, cal: Calibration, batch: int, context: int = 512) -> float:
    """Seconds of one decode step of ``batch`` streams, each with ``context`` tokens of KV to read."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    t1, _ = first_token_s(model, m, cal)
    extra = (batch - 1) * 2 * model.params / (cal.batch(model.quant) * cal.prefill_flops(model.quant, m.cores))
    kv = batch * context * model.kv_bytes_per_token / _mem_rate(m, cal)
    return t1 + extra + kv


def decode_tok_s(model: ModelSize, m: Machine, cal: Calibration, context: int = 512) -> float:
    return 1.0 / step_s(model, m, cal, 1, context)


def prefill_tok_s(model: ModelSize, m: Machine, cal: Calibration) -> float:
    return cal.prefill_flops(model.quant, m.cores) / (2 * model.params)


def users_at(model: ModelSize, m: Machine, cal: Calibration, per_user_tok_s: float = 10.0,
             context: int = 1024, limit: int = 512) -> int:
    """The most concurrent streams that each still get ``per_user_tok_s`` (0 when not even one does)."""
    users = 0
    for b in range(1, limit + 1):
        if 1.0 / step_s(model, m, cal, b, context) < per_user_tok_s:
            break
        users = b
    return users


def ram_bytes(model: ModelSize, n_ctx: int = 8192, kv_factor: float = 1.0) -> int:
    """Resident memory of one server holding the model: weights + KV (``kv_factor`` 34/64 for q8_0) +
    compute buffer + the server."""
    return int(model.weight_bytes + n_ctx * model.kv_bytes_per_token * kv_factor + model.compute_bytes
               + SERVER_OVERHEAD_BYTES)


def capacity_row(model: ModelSize, m: Machine, cal: Calibration, *, per_user_tok_s: float = 10.0,
                 context: int = 1024, n_ctx: int = 8192) -> CapacityRow:
    users = users_at(model, m, cal, per_user_tok_s, context)
    step = step_s(model, m, cal, max(users, 1), context)
    _, bound = first_token_s(model, m, cal)
    return CapacityRow(
        model=model.name,
        machine=m.label or f"{m.cores} cores, {m.bandwidth_gb_s:g} GB/s",
        decode_tok_s=decode_tok_s(model, m, cal, context=256),
        prefill_tok_s=prefill_tok_s(model, m, cal),
        users=users,
        aggregate_tok_s=max(users, 1) / step if users else 0.0,
        per_user_tok_s=1.0 / step,
        ram_bytes=ram_bytes(model, n_ctx),
        bound=bound,
    )


def capacity_table(models: Iterable[ModelSize], machines: Iterable[Machine], cal: Calibration,
                   **kwargs: float) -> list[CapacityRow]:
    machines = list(machines)
    return [capacity_row(model, m, cal, **kwargs) for model in models for m in machines]  # type: ignore[arg-type]


def for_isa(cal: Calibration, flags: Iterable[str]) -> Calibration:
    """Adjust this machine class's calibration for another instruction set: AMX multiplies the prefill
    (matrix-matrix) rate of the quantizations AMX kernels cover (×3.8 for Q4_0, ×3.9 for Q8_0 on a 16-core
    Xeon, issue 16's figures); AVX2 without AVX-512 halves it. Decode stays bandwidth-bound either way."""
    flags = set(flags)
    if {"amx_int8", "amx_tile"} <= flags:
        scale = {"Q4_0": 3.8, "Q8_0": 3.9}
        return replace(cal, prefill_gflops_per_core={k: v * scale.get(k, 1.0)
                                                     for k, v in cal.prefill_gflops_per_core.items()})
    if "avx512f" not in flags and "avx2" in flags:
        return replace(cal, prefill_gflops_per_core={k: v / 2 for k, v in cal.prefill_gflops_per_core.items()})
    return cal


# Measured on this project's box (2-core AMD EPYC Zen 5, AVX-512 VNNI/BF16, 41-47 GB/s read): docs/capacity.md
# says which runs. Other instruction sets go through ``for_isa``.
CALIBRATION = Calibration(
    # Llama-2-7B shape, Q8_0: 6.24 tok/s × 7.02 GB read ÷ 46.5 GB/s = 0.94 of the numpy read bandwidth
    bandwidth_efficiency=0.92,
    # prefill of a 1.5k-token prompt: Q4_0 and Q8_0 on the 7B shape, Q4_K_M on the 13B shape (14.3 tok/s)
    prefill_gflops_per_core={"Q4_0": 232.0, "Q4_K_M": 186.0, "Q8_0": 103.0},
    # Llama-2-7B shape, Q4_0: 10.2 tok/s × 3.75 GB read on 2 cores (below the bandwidth: the cores decide)
    decode_gb_s_per_core={"Q4_0": 19.1},
    # inter-token p50 at 1, 4 and 8 clients: each extra stream costs 2 × params ÷ (e_b × prefill rate)
    batch_efficiency=1.0,
    batch_efficiency_by_quant={"Q4_0": 0.94, "Q8_0": 1.0, "Q4_K_M": 0.72},
)


# The seed's models in the quantizations benchmarks/shapes.py measures: parameters, tensor bytes, bytes a
# decode step reads and f16 KV bytes per token, from benchmarks/shapegen.py (``estimated_bytes``: llama.cpp's
# own type rules; tests/unit/bench keeps these equal to it and to the generated files).
REFERENCE_MODELS: tuple[ModelSize, ...] = (
    ModelSize("Llama-2-7B", "Q4_0", 6_738_415_616, 3_825_065_984, 3_751_337_984, 524_288),
    ModelSize("Llama-2-7B", "Q4_K_M", 6_738_415_616, 4_080_263_168, 4_006_535_168, 524_288),
    ModelSize("Llama-2-7B", "Q8_0", 6_738_415_616, 7_160_348_672, 7_021_084_672, 524_288),
    ModelSize("Llama-2-13B", "Q4_0", 13_015_864_320, 7_365_089_280, 7_272_929_280, 819_200),
    ModelSize("Llama-2-13B", "Q4_K_M", 13_015_864_320, 7_865_210_880, 7_773_050_880, 819_200),
    ModelSize("Llama-2-13B", "Q8_0", 13_015_864_320, 13_830_574_080, 13_656_494_080, 819_200),
    ModelSize("ChatGLM2-6B", "Q4_0", 6_243_584_000, 3_581_927_424, 3_432_112_128, 28_672),
    ModelSize("ChatGLM2-6B", "Q4_K_M", 6_243_584_000, 4_138_852_352, 3_989_037_056, 28_672),
    ModelSize("ChatGLM2-6B", "Q8_0", 6_243_584_000, 6_634_872_832, 6_351_888_384, 28_672),
    ModelSize("Qwen2.5-7B", "Q4_0", 7_615_616_512, 4_425_437_184, 4_118_876_160, 57_344),
    ModelSize("Qwen2.5-7B", "Q4_K_M", 7_615_616_512, 4_677_120_000, 4_370_558_976, 57_344),
    ModelSize("Qwen2.5-7B", "Q8_0", 7_615_616_512, 8_092_571_648, 7_513_511_936, 57_344),
)

# Machine classes of docs/capacity.md's table (physical cores, measured read bandwidth).
MACHINE_CLASSES: tuple[Machine, ...] = (
    Machine(2, 45.0, "2 cores, 45 GB/s (this box)"),
    Machine(8, 60.0, "8 cores, 60 GB/s (desktop, 2-ch DDR5)"),
    Machine(16, 89.0, "16 cores, 89 GB/s (Xeon VM of issue 16)"),
    Machine(32, 250.0, "32 cores, 250 GB/s (8-ch DDR5 server)"),
    Machine(64, 400.0, "64 cores, 400 GB/s (12-ch DDR5 server)"),
)


def reference_model(label: str, quant: str) -> ModelSize:
    for m in REFERENCE_MODELS:
        if m.label == label and m.quant == quant.upper():
            return m
    raise KeyError(f"no reference model {label} {quant}")


def this_machine_line(cores: int, bandwidth_gb_s: float, flags: Iterable[str], *, label: str = "Llama-2-7B",
                      quant: str = "Q4_K_M", per_user_tok_s: float = 10.0) -> str:
    """The capacity row ``inhouse doctor`` prints for the machine it runs on, e.g.
    "on this machine: 7B Q4_K_M ≈ 10.0 tok/s, 0 users at 10 tok/s (RAM 9.4 GB at n_ctx 8192)"."""
    model = reference_model(label, quant)
    row = capacity_row(model, Machine(cores, bandwidth_gb_s), for_isa(CALIBRATION, flags),
                       per_user_tok_s=per_user_tok_s)
    size = label.rsplit("-", 1)[-1]
    return (f"on this machine: {size} {model.quant} ≈ {row.decode_tok_s:.1f} tok/s, {row.users} users at "
            f"{per_user_tok_s:g} tok/s (RAM {row.ram_bytes / GB:.1f} GB at n_ctx 8192)")
