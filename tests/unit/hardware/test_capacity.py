"""The capacity model: decode, users at a per-user rate and RAM from bandwidth and compute ceilings."""

from __future__ import annotations

import pytest

from inhouse.hardware.capacity import (
    SERVER_OVERHEAD_BYTES,
    Calibration,
    Machine,
    ModelSize,
    capacity_row,
    capacity_table,
    decode_tok_s,
    for_isa,
    prefill_tok_s,
    ram_bytes,
    step_s,
    users_at,
)

SEVEN_B = ModelSize("7B", "Q4_0", params=6.74e9, weight_bytes=3_830_000_000, read_bytes=3_560_000_000,
                    kv_bytes_per_token=524_288, compute_bytes=600 * 2**20)
CAL = Calibration(bandwidth_efficiency=0.85, prefill_gflops_per_core={"Q4_0": 200.0}, batch_efficiency=0.4)


def test_single_stream_decode_is_the_bandwidth_roofline_when_compute_is_not_limiting() -> None:
    box = Machine(cores=16, bandwidth_gb_s=89.0)
    rate = decode_tok_s(SEVEN_B, box, CAL, context=0)
    assert rate == pytest.approx(0.85 * 89e9 / 3.56e9)
    assert capacity_row(SEVEN_B, box, CAL).bound == "bandwidth"


def test_a_per_core_decode_ceiling_takes_over_on_few_cores() -> None:
    cal = Calibration(prefill_gflops_per_core={"Q4_0": 200.0}, decode_gb_s_per_core={"Q4_0": 10.0})
    few, many = Machine(cores=2, bandwidth_gb_s=89.0), Machine(cores=32, bandwidth_gb_s=89.0)
    assert decode_tok_s(SEVEN_B, few, cal, context=0) == pytest.approx(20e9 / 3.56e9)
    assert capacity_row(SEVEN_B, few, cal).bound == "compute"
    assert capacity_row(SEVEN_B, many, cal).bound == "bandwidth"


def test_kv_reads_slow_long_contexts() -> None:
    box = Machine(cores=8, bandwidth_gb_s=40.0)
    assert decode_tok_s(SEVEN_B, box, CAL, context=4000) < decode_tok_s(SEVEN_B, box, CAL, context=0)


def test_users_at_target_is_the_largest_batch_that_keeps_the_per_user_rate() -> None:
    box = Machine(cores=32, bandwidth_gb_s=200.0)
    users = users_at(SEVEN_B, box, CAL, per_user_tok_s=10.0)
    assert users >= 2
    assert 1 / step_s(SEVEN_B, box, CAL, users, 1024) >= 10.0
    assert 1 / step_s(SEVEN_B, box, CAL, users + 1, 1024) < 10.0
    # More bandwidth or more cores never serve fewer users.
    assert users_at(SEVEN_B, Machine(32, 400.0), CAL) >= users
    assert users_at(SEVEN_B, Machine(64, 200.0), CAL) >= users


def test_no_user_when_one_stream_is_below_the_target() -> None:
    slow = Machine(cores=2, bandwidth_gb_s=20.0)  # 0.85 × 20 / 3.56 ≈ 4.8 tok/s
    row = capacity_row(SEVEN_B, slow, CAL)
    assert row.users == 0 and row.aggregate_tok_s == 0.0 and row.decode_tok_s < 10


def test_prefill_is_compute_bound_and_ram_adds_its_parts() -> None:
    box = Machine(cores=4, bandwidth_gb_s=40.0)
    assert prefill_tok_s(SEVEN_B, box, CAL) == pytest.approx(4 * 200e9 / (2 * 6.74e9))
    assert ram_bytes(SEVEN_B, n_ctx=4096) == 3_830_000_000 + 4096 * 524_288 + 600 * 2**20 + SERVER_OVERHEAD_BYTES
    assert ram_bytes(SEVEN_B, n_ctx=4096, kv_factor=34 / 64) < ram_bytes(SEVEN_B, n_ctx=4096)


def test_table_is_models_times_machines() -> None:
    boxes = [Machine(2, 45.0, "here"), Machine(16, 89.0)]
    rows = capacity_table([SEVEN_B, SEVEN_B], boxes, CAL)
    assert len(rows) == 4 and rows[0].machine == "here" and rows[1].machine == "16 cores, 89 GB/s"


def test_isa_adjusts_prefill_not_bandwidth() -> None:
    amx = for_isa(CAL, ["avx512f", "amx_tile", "amx_int8"])
    assert amx.prefill_gflops_per_core["Q4_0"] == pytest.approx(200.0 * 3.8)
    assert for_isa(CAL, ["avx2"]).prefill_gflops_per_core["Q4_0"] == pytest.approx(100.0)
    assert for_isa(CAL, ["avx2", "avx512f"]) == CAL
    box = Machine(16, 89.0)
    assert decode_tok_s(SEVEN_B, box, amx) == pytest.approx(decode_tok_s(SEVEN_B, box, CAL))


def test_this_machine_line_names_size_quant_rate_and_users() -> None:
    from inhouse.hardware.capacity import this_machine_line

    here = this_machine_line(2, 45.0, ["avx2", "avx512f"])
    assert here.startswith("on this machine: 7B Q4_K_M ≈ ") and "users at 10 tok/s" in here
    big = this_machine_line(32, 250.0, ["avx2", "avx512f"])
    users = lambda line: int(line.split("tok/s, ")[1].split(" users")[0])  # noqa: E731
    assert users(big) > users(here)
    with pytest.raises(KeyError):
        this_machine_line(2, 45.0, [], label="Llama-2-70B")
