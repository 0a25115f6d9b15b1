"""`inhouse kb eval`: a corpus without qa.jsonl, a missing `--qa` file or one that is not JSON lines is one `error:`
line naming the file (and the line), exit 2, before any services are opened or anything is ingested (before, each was
a traceback after the corpus was ingested). `--data-dir` names the data directory whose models are used; the
evaluation still runs in a temporary one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli import kb as kb_cli
from inhouse.cli.main import app
from inhouse.config import Settings

QUESTION = '{"id": "q1", "question": "How many days?", "answerable": true, "answer": "15", "source": "hr/a.md"}\n'


class Opened(Exception):
    """The services were opened: in which data directory, and where its models were (it is gone afterwards)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("services opened")
        self.data_dir = settings.data_dir
        self.models = (settings.data_dir / "models").resolve()


@pytest.fixture(autouse=True)
def no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    def opened(settings: Settings) -> Any:
        raise Opened(settings)

    monkeypatch.setattr(kb_cli, "open_services", opened)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (tmp_path / "corpus" / "hr").mkdir(parents=True)
    (tmp_path / "corpus" / "hr" / "a.md").write_text("# Leave\n\n15 days.\n")
    return tmp_path / "corpus"


def kb_eval(*args: str) -> Result:
    return CliRunner().invoke(app, ["kb", "eval", *args], env={"COLUMNS": "400"})


def one_error(result: Result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


def test_a_corpus_without_its_qa_file(corpus: Path) -> None:
    assert f"{corpus / 'qa.jsonl'}: no such QA file" in one_error(kb_eval("--corpus", str(corpus)))


def test_a_missing_qa_file(corpus: Path, tmp_path: Path) -> None:
    line = one_error(kb_eval("--corpus", str(corpus), "--qa", str(tmp_path / "nope.jsonl")))
    assert f"{tmp_path / 'nope.jsonl'}: no such QA file" in line


@pytest.mark.parametrize(("second", "says"), [
    ("{bad\n", "line 2: not valid JSON"),
    ('["a list"]\n', 'line 2: a question is a JSON object with "id"'),
    (QUESTION, "line 2: question id 'q1' appears twice"),
])
def test_a_qa_file_that_is_not_a_qa_set(second: str, says: str, corpus: Path, tmp_path: Path) -> None:
    qa = tmp_path / "bad.jsonl"
    qa.write_text(QUESTION + second)
    assert f"{qa}, {says}" in one_error(kb_eval("--corpus", str(corpus), "--qa", str(qa)))


def test_data_dir_names_the_models_used(corpus: Path, tmp_path: Path) -> None:
    (corpus / "qa.jsonl").write_text(QUESTION)
    install = tmp_path / "install"
    (install / "models").mkdir(parents=True)
    result = kb_eval("--corpus", str(corpus), "--data-dir", str(install))
    assert isinstance(result.exception, Opened), (result.output, result.exception)
    assert result.exception.data_dir != install and result.exception.models == (install / "models").resolve()


def test_a_data_dir_that_is_not_there(corpus: Path, tmp_path: Path) -> None:
    (corpus / "qa.jsonl").write_text(QUESTION)
    assert "no such directory" in one_error(kb_eval("--corpus", str(corpus), "--data-dir", str(tmp_path / "x")))
