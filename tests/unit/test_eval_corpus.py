"""The evaluation corpus rules (``inhouse.eval_corpus``): ``--corpus``, then ``INHOUSE_EVAL_CORPUS``, then
``../shared/corpus`` beside the checkout; a missing corpus is a clear ``InvalidRequest``. The layout rule on a real
checkout elsewhere on disk, through the commands: tests/e2e/test_eval_corpus_layout.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.errors import InvalidRequest
from inhouse.eval_corpus import ENV_VAR, default_corpus, find_eval_corpus, repository_root

REPO = Path(__file__).resolve().parents[2]


def test_the_option_wins_over_the_variable(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert find_eval_corpus(a, environ={ENV_VAR: str(b)}) == a
    assert find_eval_corpus(None, environ={ENV_VAR: str(b)}) == b
    assert find_eval_corpus("", environ={ENV_VAR: str(b)}) == b  # an empty option is no option


def test_a_named_corpus_that_is_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as exc:
        find_eval_corpus(tmp_path / "nope", environ={})
    assert exc.value.code == "corpus_not_found" and exc.value.param == "corpus"
    assert f"No evaluation corpus at {tmp_path / 'nope'} (from --corpus)" in exc.value.message
    with pytest.raises(InvalidRequest) as exc:
        find_eval_corpus(environ={ENV_VAR: str(tmp_path / "gone")})
    assert f"(from {ENV_VAR})" in exc.value.message and "Pass --corpus DIR" in exc.value.message


def test_the_default_is_beside_this_checkout() -> None:
    # The tests run from a checkout: the package was imported from <repo>/src/inhouse.
    assert repository_root() == REPO
    assert default_corpus() == REPO.parent / "shared" / "corpus"
    if not (REPO.parent / "shared" / "corpus").is_dir():
        with pytest.raises(InvalidRequest, match=r"\.\./shared/corpus beside the repository"):
            find_eval_corpus(environ={})
    else:
        assert find_eval_corpus(environ={}) == REPO.parent / "shared" / "corpus"
