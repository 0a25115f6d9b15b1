"""Fixtures every suite shares: the evaluation corpus, found exactly as the evaluation commands find it, and a
local PostgreSQL per session for the PostgreSQL stores (``inhouse.testing.postgres``), and packaged models
joined once per session (``seed_pulled_model``).

``eval_corpus`` is ``INHOUSE_EVAL_CORPUS`` when set, else ``<repo>/../shared/corpus`` (``inhouse.eval_corpus``).
A test that needs it is skipped only when the corpus truly cannot be there: no variable and no ``../shared``
directory at all beside the repository (a checkout outside the project layout). When the variable names a
missing directory, or ``../shared`` exists without ``corpus/`` (the CI layout, broken), the test fails instead:
a corpus that should be there and is not must not pass as a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inhouse.errors import InvalidRequest
from inhouse.eval_corpus import ENV_VAR, default_corpus, find_eval_corpus
from inhouse.models.catalog import catalog_by_name
from inhouse.testing.postgres import index_store, postgres_server, postgres_url, store_url

__all__ = ["eval_corpus", "index_store", "optional_eval_corpus", "postgres_server", "postgres_url",
           "seed_pulled_model", "store_url"]


def _locate_eval_corpus() -> Path | None:
    try:
        return find_eval_corpus()
    except InvalidRequest as exc:
        default = default_corpus()
        if os.environ.get(ENV_VAR) or (default is not None and default.parent.is_dir()):
            pytest.fail(exc.message, pytrace=False)
        return None


def _skip_reason() -> str:
    default = default_corpus()
    where = f"no {default.parent}" if default is not None else "not running from a repository checkout"
    return f"evaluation corpus unavailable: {ENV_VAR} is not set and there is {where} (outside the project layout)"


@pytest.fixture(scope="session")
def optional_eval_corpus() -> Path | None:
    """The corpus, or None outside the project layout (for tests that also run on built-in examples)."""
    return _locate_eval_corpus()


@pytest.fixture(scope="session")
def eval_corpus(optional_eval_corpus: Path | None) -> Path:
    """The corpus; skipped (with the reason) only outside the project layout."""
    if optional_eval_corpus is None:
        pytest.skip(_skip_reason())
    return optional_eval_corpus


@pytest.fixture(scope="session")
def seed_pulled_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Path], None]:
    """``seed(name, data_dir)``: put the joined file of catalog model ``name`` into ``data_dir``'s model cache as
    a hard link of one copy pulled (``inhouse models pull``) once per session, so the tests that serve it do not
    each join their own ~0.5 GB copy (the CI shares its disk). A later ``models pull`` in ``data_dir`` then
    verifies the link like any present file. Tests that check the joining itself do not use this."""
    shared = tmp_path_factory.mktemp("models-shared")
    inhouse = Path(sys.executable).with_name("inhouse")

    def seed(name: str, data_dir: Path) -> None:
        entry = catalog_by_name()[name]
        source = shared / "models" / entry.filename
        if not source.is_file():
            pulled = subprocess.run([str(inhouse), "models", "pull", name, "--data-dir", str(shared)],
                                    capture_output=True, text=True, timeout=900)
            assert pulled.returncode == 0, pulled.stderr + pulled.stdout
        dest = data_dir / "models" / entry.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.link(source, dest)

    return seed


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every account can enter (pytest's tmp_path is under a 0700 directory of root's): for what a
    service's account must reach (tests of `inhouse service install --system --run-as`)."""
    path = Path(tempfile.mkdtemp(prefix="inhouse-open-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
