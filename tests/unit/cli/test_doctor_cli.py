"""`inhouse doctor` and `inhouse models list` on a cached (faked) probe answer: what a user reads, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.bootstrap import build_probe
from inhouse.cli.main import app
from inhouse.config import Settings
from inhouse.hardware.probe import ProbeReport
from inhouse.testing.probe import fake_report

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    return invoke


def cache(tmp_path: Path, report: ProbeReport) -> None:
    path = build_probe(Settings(data_dir=tmp_path)).cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict()))


def test_doctor_explains_a_crashing_amx_path_and_the_fallback(run: Run, tmp_path: Path) -> None:
    cache(tmp_path, fake_report("amx_crashes"))
    code, out = run("doctor", "--timing")
    assert code == 0, out
    assert "AMX advertised but unusable here: general protection fault" in out
    assert "crashed" in out and "Weight buffers (engine.weight_buffers=auto): repack" in out
    assert "Default model qwen2.5-coder-1.5b" in out and "read the cached answer in" in out
    assert "Embeddings kb.embedder=fake" in out


def test_doctor_says_which_embedding_engine_runs_and_why(run: Run, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cache(tmp_path, fake_report("no_amx"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "e5")
    monkeypatch.setenv("INHOUSE_KB__EMBED_ENGINE", "llama")
    code, out = run("doctor")
    assert code == 0 and "Embeddings (kb.embed_engine=llama): llama — set explicitly" in out
    monkeypatch.setenv("INHOUSE_KB__EMBED_ENGINE", "auto")
    code, out = run("doctor")  # the real self-test, on whatever CPU runs the tests
    assert code == 0 and ("(kb.embed_engine=auto): onnx — ONNX Runtime" in out
                          or "(kb.embed_engine=auto): llama — " in out), out


def test_doctor_json_is_the_whole_answer(run: Run, tmp_path: Path) -> None:
    cache(tmp_path, fake_report("amx_works"))
    code, out = run("doctor", "--json")
    assert code == 0
    assert json.loads(out)["paths"]["amx"]["placed"]["AMX"] > 0


def test_doctor_fails_when_llama_cpp_does_not_run_at_all(run: Run, tmp_path: Path) -> None:
    cache(tmp_path, fake_report("nothing_runs"))
    code, out = run("doctor")
    assert code == 1 and "hardware_unusable" not in out and "does not run on this machine" in out


def test_a_refuted_forced_setting_is_a_clear_error(run: Run, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cache(tmp_path, fake_report("amx_crashes"))
    monkeypatch.setenv("INHOUSE_ENGINE__WEIGHT_BUFFERS", "amx")
    code, out = run("doctor")
    assert code == 2 and "engine.weight_buffers='amx' is refuted on this machine" in out


def test_models_list_says_which_weight_path_and_why(run: Run, tmp_path: Path) -> None:
    code, out = run("models", "list")
    assert code == 0 and "not probed yet" in out and "Default model: smollm2-135m" in out
    cache(tmp_path, fake_report("no_amx"))
    code, out = run("models", "list")
    assert code == 0 and "Weight buffers: repack (auto: No AMX on this CPU." in out
    assert "Default model: qwen2.5-coder-1.5b (the best packaged model this machine runs well" in out


def test_doctor_prints_the_capacity_row_of_this_machine(run: Run, tmp_path: Path) -> None:
    from inhouse.cli.doctor import capacity_line
    from inhouse.hardware.capacity import this_machine_line

    small = fake_report("amx_crashes", bandwidth_gb_s=40.0)
    cache(tmp_path, small)
    code, out = run("doctor")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("Capacity "))
    # The AMX path crashed here, so AMX is not counted: the row is the AVX-512 machine's.
    no_amx = [k for k, v in small.isa.items() if v and not k.startswith("amx")]
    assert row == "Capacity " + this_machine_line(2, 40.0, no_amx)
    assert row.startswith("Capacity on this machine: 7B Q4_K_M ≈") and "users at 10 tok/s" in row
    # More cores and bandwidth serve more: the row follows the probe's figures, not constants.
    big = fake_report("amx_works", physical_cores=32, bandwidth_gb_s=250.0)
    assert capacity_line(big) == this_machine_line(32, 250.0, [k for k, v in big.isa.items() if v])
    assert capacity_line(big) != capacity_line(small)
