"""Settings that cannot be read are refused with one line naming them: a list given as a plain string in a variable,
a misspelt field inside a section (in the file or the environment). Maps of arbitrary keys and the ``INHOUSE_*``
variables that are not settings keep working."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.config import Section, Settings, load_settings, settings_problems


@pytest.fixture(autouse=True)
def _no_settings_from_outside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("INHOUSE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))


def problems(**overrides: object) -> str:
    with pytest.raises(ValidationError) as info:
        load_settings(**overrides)
    return settings_problems(info.value)


def with_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str) -> None:
    (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
    monkeypatch.setenv("INHOUSE_CONFIG", str(tmp_path / "config.toml"))


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("INHOUSE_GOVERNANCE__INTERNAL_DOMAINS", "qinglan.com.cn",
     "governance.internal_domains (INHOUSE_GOVERNANCE__INTERNAL_DOMAINS): a list is written as JSON, "
     "e.g. '[\"qinglan.com.cn\"]' (given: 'qinglan.com.cn')"),
    ("INHOUSE_MODELS__PREWARM", "mon-fri 08:30",
     "models.prewarm (INHOUSE_MODELS__PREWARM): a list is written as JSON, e.g. '[\"mon-fri 08:30\"]'"),
    ("INHOUSE_KB__LABEL_NAMES", "Secret=restricted",
     "kb.label_names (INHOUSE_KB__LABEL_NAMES): a map is written as JSON"),
    ("INHOUSE_ENGINE", "n_ctx=4096", "engine (INHOUSE_ENGINE): a section is set field by field"),
])
def test_a_variable_that_is_not_json_where_json_is_needed_is_named(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    assert expected in problems()


@pytest.mark.parametrize(("name", "expected"), [
    ("INHOUSE_DATA_DIRR", "data_dirr (INHOUSE_DATA_DIRR): no such setting; the closest is data_dir"),
    ("INHOUSE_ENGIN__N_CTX", "engin (INHOUSE_ENGIN): no such setting; the closest is engine"),
    ("INHOUSE_MODEL", "model (INHOUSE_MODEL): no such setting; the closest is models"),
])
def test_a_misspelt_variable_is_named_not_ignored(monkeypatch: pytest.MonkeyPatch, name: str, expected: str) -> None:
    monkeypatch.setenv(name, "4096")  # before 2026-12-07 (fifth session): ignored, the setting kept its default
    assert problems() == f"Invalid settings: {expected}."


def test_other_inhouse_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INHOUSE_API_KEY", "INHOUSE_URL", "INHOUSE_BASE_URL", "INHOUSE_SETUP_MODEL", "INHOUSE_TEST_KEY"):
        monkeypatch.setenv(name, "x")
    load_settings()


def test_a_list_written_as_json_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_GOVERNANCE__INTERNAL_DOMAINS", '["qinglan.com.cn", "qinglan.cn"]')
    monkeypatch.setenv("INHOUSE_MODELS__PREWARM", '["sat,sun 10:00"]')  # a comma inside an entry is not a split
    settings = load_settings()
    assert settings.governance.internal_domains == ["qinglan.com.cn", "qinglan.cn"]
    assert settings.models.prewarm == ["sat,sun 10:00"]


def test_a_misspelt_field_in_the_file_is_refused_with_the_closest_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_file(monkeypatch, tmp_path, "[engine]\nn_ctxx = 4096\n")
    assert problems() == (f"Invalid settings: engine.n_ctxx (in {tmp_path / 'config.toml'}): no such setting; "
                          "the closest is engine.n_ctx.")


def test_a_problem_in_the_file_names_the_file_not_a_variable_nobody_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Before 2026-12-07: "engine.bogus (INHOUSE_ENGINE__BOGUS)", though no such variable was set.
    with_file(monkeypatch, tmp_path, "data_dirr = 'x'\n[engine]\nn_ctx = 'many'\nbogus = 1\n[kb.label_names]\n")
    monkeypatch.setenv("INHOUSE_SERVER__PORTT", "1")
    found = problems()
    path = tmp_path / "config.toml"
    assert f"engine.bogus (in {path}): no such setting;" in found
    assert f"engine.n_ctx (in {path}): Input should be a valid integer" in found
    assert f"data_dirr (in {path}): no such setting; the closest is data_dir" in found
    assert "server.portt (INHOUSE_SERVER__PORTT): no such setting; the closest is server.port" in found
    assert "INHOUSE_ENGINE__BOGUS" not in found and "INHOUSE_ENGINE__N_CTX" not in found


def test_a_variable_overriding_a_bad_file_value_is_the_one_named(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_file(monkeypatch, tmp_path, "[engine]\nn_ctx = 'many'\n")
    monkeypatch.setenv("INHOUSE_ENGINE__N_CTX", "lots")  # the environment wins over the file: its value is read
    assert problems().startswith("Invalid settings: engine.n_ctx (INHOUSE_ENGINE__N_CTX): ")


def test_a_misspelt_field_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_ENGINE__N_CTXX", "4096")
    assert "engine.n_ctxx (INHOUSE_ENGINE__N_CTXX): no such setting; the closest is engine.n_ctx." in problems()


def test_a_misspelt_section_is_refused_with_the_closest_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_file(monkeypatch, tmp_path, "[engin]\nn_ctx = 4096\n")
    assert problems() == "Invalid settings: engin: no such setting; the closest is engine."


def test_a_name_far_from_any_setting_is_refused_without_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_KB__ZZZ", "1")
    assert problems() == "Invalid settings: kb.zzz (INHOUSE_KB__ZZZ): no such setting."


def test_every_section_refuses_unknown_fields() -> None:
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            assert issubclass(field.annotation, Section), f"{name} is a section but not a Section"
            assert field.annotation.model_config.get("extra") == "forbid", name


def test_a_map_setting_keeps_its_own_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_file(monkeypatch, tmp_path, '[kb.label_names]\n"Qinglan Secret" = "restricted"\n')
    monkeypatch.setenv("INHOUSE_KB__LABEL_NAMES__HIGHLY_CONFIDENTIAL", "restricted")
    assert load_settings().kb.label_names == {"Qinglan Secret": "restricted", "highly_confidential": "restricted"}


def test_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_file(monkeypatch, tmp_path, "[engine]\nn_ctx = 4096\n")
    for name in ("INHOUSE_API_KEY", "INHOUSE_BASE_URL", "INHOUSE_URL", "INHOUSE_EVAL_CORPUS", "INHOUSE_SETUP_MODEL",
                 "INHOUSE_WHEEL_CACHE", "INHOUSE_TEST_KEY"):
        monkeypatch.setenv(name, "x")
    settings = load_settings()
    assert settings.engine.n_ctx == 4096 and settings.data_dir == tmp_path / "data"


@pytest.mark.parametrize(("env", "toml", "expected"), [
    ({"INHOUSE_GOVERNANCE__INTERNAL_DOMAINS": "qinglan.com.cn"}, None,
     "(INHOUSE_GOVERNANCE__INTERNAL_DOMAINS): a list is written as JSON, e.g. '[\"qinglan.com.cn\"]'"),
    ({"INHOUSE_MODELS__PREWARM": "mon-fri 08:30"}, None, "(INHOUSE_MODELS__PREWARM): a list is written as JSON"),
    ({"INHOUSE_ENGINE__N_CTXX": "4096"}, None, "engine.n_ctxx (INHOUSE_ENGINE__N_CTXX): no such setting"),
    ({}, "[engine]\nn_ctxx = 4096\n", "engine.n_ctxx (in {file}): no such setting"),
])
def test_every_command_stops_with_one_line_and_exit_2(env: dict[str, str], toml: str | None, expected: str,
                                                       tmp_path: Path) -> None:
    env = {"COLUMNS": "400", "INHOUSE_DATA_DIR": str(tmp_path / "data"), **env}
    if toml is not None:
        (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
        env["INHOUSE_CONFIG"] = str(tmp_path / "config.toml")
    result = CliRunner().invoke(app, ["users", "list"], env=env)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    expected = expected.format(file=tmp_path / "config.toml")
    assert len(errors) == 1 and expected in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # refused before anything was written
