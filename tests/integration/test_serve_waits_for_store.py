"""`inhouse serve` started before its PostgreSQL server (both machines booting after a power cut): it waits, saying
so, and serves once the database is up; past `store.connect_wait_s` it exits 5 with one clear line. Failing at once
would have systemd restart it every few seconds until its start limit stopped it for good."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inhouse.store.postgres.local import LocalPostgres
from inhouse.testing.crash import inhouse_argv
from inhouse.testing.postgres import local_postgres, skip_without_postgres
from inhouse.testing.server_process import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SMOL = "smollm2-135m"


@pytest.fixture
def stopped_postgres() -> Iterator[tuple[LocalPostgres, str]]:
    """A PostgreSQL of this test's own with an empty database, stopped."""
    skip_without_postgres()
    with local_postgres() as server:
        url = server.create_database()
        server.stop()
        yield server, url


def test_serve_waits_for_its_database_then_serves(tmp_path: Path, stopped_postgres: tuple[LocalPostgres, str]) -> None:
    pg, url = stopped_postgres
    env = {"INHOUSE_STORE__URL": url, "INHOUSE_STORE__CONNECT_WAIT_S": "120"}
    server = ServerProcess(tmp_path, SMOL, env=env)
    said_so = threading.Event()
    done = threading.Event()

    def start_postgres_once_it_waits() -> None:
        # The database comes up only once the server has said it waits: a fixed delay raced the server's own
        # start-up (its hardware probe takes a minute on a loaded box) and started PostgreSQL before it was missed.
        while not done.is_set():
            if "waiting for the database" in server.log_tail(20000):
                said_so.set()
                pg.start()
                return
            time.sleep(0.2)

    starter = threading.Thread(target=start_postgres_once_it_waits, daemon=True)
    starter.start()
    try:
        server.start(ready_timeout_s=300)
        assert httpx.get(server.url + "/ready", timeout=10).status_code == 200
    finally:
        done.set()
        starter.join(timeout=60)
        server.stop()
    assert said_so.is_set()


def test_serve_gives_up_after_connect_wait_s_with_one_line(tmp_path: Path,
                                                           stopped_postgres: tuple[LocalPostgres, str]) -> None:
    _, url = stopped_postgres
    env = {"INHOUSE_DATA_DIR": str(tmp_path), "INHOUSE_STORE__URL": url, "INHOUSE_STORE__CONNECT_WAIT_S": "3",
           "COLUMNS": "300"}
    t = time.monotonic()
    done = subprocess.run(inhouse_argv("serve", "--model", SMOL, "--port", "0"), capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})
    assert done.returncode == 5, done.stderr
    assert "cannot be reached" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - t < 120
