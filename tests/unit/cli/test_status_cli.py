"""`inhouse status --url` with a URL that cannot be one (httpx.InvalidURL is not an httpx.HTTPError; a URL without
http://): one red line, exit 2, no traceback. No connection is attempted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1]:x/", "localhost:8000", "ftp://127.0.0.1/"])
def test_a_url_that_cannot_be_used_is_bad_input(url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--url", url, "--data-dir", str(tmp_path / "data")],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a server's URL" in errors[0], result.output
