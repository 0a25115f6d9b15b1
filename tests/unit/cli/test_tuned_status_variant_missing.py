"""A tuned profile whose re-quantized weights are gone (or whose values do not fit the settings) is refused by
serve as a whole; `inhouse models list`, serve's start-up line and `/v1/models` say so instead of "applied"."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.cli.serve import _print_tuning
from inhouse.config import EngineSettings
from inhouse.hardware.cpu import detect_cpu
from inhouse.models.registry import ModelRegistry
from inhouse.models.tuning.profile import ProfileStore, TunedProfile, WeightsVariant
from inhouse.models.tuning.status import tuned_status
from inhouse.testing.gguf_writer import write_tiny_model

runner = CliRunner()


def tuned(store: ProfileStore, sha: str, variant: str, variant_sha: str, **engine: object) -> None:
    store.save(TunedProfile(model="tiny", model_sha256=sha, cpu_signature=store.cpu_signature, created_at="t",
                            engine={"n_threads": 1, **engine},
                            weights=WeightsVariant(name=variant, sha256=variant_sha, format="q8_0")))


@pytest.fixture
def host(tmp_path: Path) -> tuple[ModelRegistry, ProfileStore, str, str]:
    reg = ModelRegistry(tmp_path / "cache", lambda spec: None, 1000, catalog=())  # type: ignore[arg-type, return-value]
    sha = reg.add(write_tiny_model(tmp_path / "tiny.gguf"), "tiny").sha256
    vsha = reg.add(write_tiny_model(tmp_path / "tiny-q8.gguf", context_length=4096), "tiny@q8_0").sha256
    assert sha is not None and vsha is not None
    return reg, ProfileStore(tmp_path / "profiles", lambda: "cpu1"), sha, vsha


def test_status_is_what_serve_does(host: tuple[ModelRegistry, ProfileStore, str, str]) -> None:
    reg, store, sha, vsha = host
    tuned(store, sha, "tiny@q8_0", vsha)
    engine = EngineSettings()
    assert tuned_status(store.match(sha), reg, engine)[0] == "applied"
    assert tuned_status(store.match(sha), reg, engine, verify=True)[0] == "applied"

    reg.remove("tiny@q8_0")  # "what is this @q8_0 model?"
    for verify in (False, True):
        status, message = tuned_status(store.match(sha), reg, engine, verify=verify)
        assert status == "variant_missing" and "needs weights tiny@q8_0" in message and "untuned" in message

    reg.add(Path(reg.cache_dir.parent / "tiny.gguf"), "tiny@q8_0")  # the name now pinned to other weights
    status, message = tuned_status(store.match(sha), reg, engine)
    assert status == "variant_missing" and f"pinned to {sha}" in message
    assert tuned_status(store.match(sha), reg, engine, verify=True)[0] == "variant_missing"

    tuned(store, sha, "tiny", sha, max_running=32)  # valid alone, not with a budget of 16 tokens a step
    status, message = tuned_status(store.match(sha), reg, EngineSettings(step_token_budget=16))
    assert status == "does_not_fit" and "step_token_budget (16)" in message
    assert tuned_status(store.match("f" * 64), reg, engine) == ("none", "")


def test_serve_does_not_say_applied_when_the_variant_is_gone(host: tuple[ModelRegistry, ProfileStore, str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    reg, store, sha, vsha = host
    tuned(store, sha, "tiny@q8_0", vsha)
    services = SimpleNamespace(profiles=store, registry=reg, settings=SimpleNamespace(engine=EngineSettings()))
    _print_tuning(services, sha)  # type: ignore[arg-type]
    assert "Applied tuned profile" in capsys.readouterr().out
    reg.remove("tiny@q8_0")
    _print_tuning(services, sha)  # type: ignore[arg-type]
    out = capsys.readouterr()
    err = " ".join(out.err.split())  # rich wraps at the terminal's width
    assert "Applied" not in out.out + err
    assert err.startswith("warning: The tuned profile") and "needs weights tiny@q8_0" in err and "untuned" in err


def test_models_list_shows_the_variant_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"COLUMNS": "250"}
    for name, ctx in (("tiny", 2048), ("tiny@q8_0", 4096)):
        path = write_tiny_model(tmp_path / f"{name}.gguf", context_length=ctx)
        added = runner.invoke(app, ["models", "add", str(path), "--name", name, "--data-dir", str(data)])
        assert added.exit_code == 0, added.output
    reg = ModelRegistry(data / "models", lambda spec: None, 1000, catalog=())  # type: ignore[arg-type, return-value]
    sha, vsha = reg.resolve("tiny").sha256, reg.resolve("tiny@q8_0").sha256
    assert sha is not None and vsha is not None
    tuned(ProfileStore(data / "profiles", lambda: detect_cpu().signature), sha, "tiny@q8_0", vsha)

    def listed() -> tuple[str, str]:
        """The row of tiny, and the whole output."""
        result = runner.invoke(app, ["models", "list", "--data-dir", str(data)], env=env)
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("tiny ")), result.output

    row, _ = listed()
    assert row.split()[5:7] == ["yes", "yes"]  # present, tuned
    assert runner.invoke(app, ["models", "remove", "tiny@q8_0", "--data-dir", str(data)]).exit_code == 0
    row, out = listed()
    assert row.split()[5:8] == ["yes", "variant", "missing"]
    assert "tiny: The tuned profile" in out and "needs weights tiny@q8_0" in out
