"""The `inhouse` command configures no log outside `inhouse serve`, so a library's warnings reached stderr raw:
`inhouse store migrate --to` an unreachable PostgreSQL printed psycopg_pool's "error connecting" lines (8 of them)
before its one red line. The command keeps to the one line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from inhouse.cli.main import main
from inhouse.errors import StoreUnavailable
from inhouse.store import copy


def test_store_migrate_to_an_unreachable_server_prints_only_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    pool = logging.getLogger("psycopg.pool")
    monkeypatch.setattr(pool, "level", pool.level)  # the level main() sets is undone after the test

    def unreachable(*args: object, **kwargs: object) -> None:
        pool.warning("error connecting in 'pool-1': connection refused")  # as psycopg_pool does, once per attempt
        raise StoreUnavailable("The PostgreSQL server at host=127.0.0.1 cannot be reached.")

    monkeypatch.setattr(copy, "copy_to_postgres", unreachable)
    monkeypatch.setattr(sys, "argv", ["inhouse", "store", "migrate", "--to", "postgresql://nobody@127.0.0.1:9/x",
                                      "--data-dir", str(tmp_path / "data")])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 5
    assert [r.getMessage() for r in caplog.records if r.name == "psycopg.pool"] == []
    assert "cannot be reached" in capsys.readouterr().err
