"""The schema-driven fuzzer over every route, against a real server (uvicorn on a loopback port, the production
wiring, only the model and the embedder fake), as an admin and as a member, with real ids in the path: no 5xx, no
422, no traceback (in a body or in the server's log), every error in the one shape, every status, media type and
body as the served ``/openapi.json`` documents it.

Bounded for CI (``EXAMPLES`` cases per operation and role, seeded: the same cases every run);
``python -m benchmarks.fuzz --examples 1000`` is the long run (figures in docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import FAKE_MODEL, run_live_server

from inhouse.testing.fuzz import create_callers, run_fuzz

pytestmark = pytest.mark.slow
EXAMPLES = 6


@pytest.mark.parametrize("role", ["admin", "member"])
def test_every_route_answers_as_documented(tmp_path: Path, role: str) -> None:
    settings = {"kb": {"embedder": "fake"}, "apps": {"model": FAKE_MODEL}}
    with run_live_server(tmp_path / "data", settings=settings) as server:
        keys = create_callers(server.services)
        # The description the server serves to any key, not one built beside it.
        served = httpx.get(server.url + "/openapi.json", headers={"Authorization": f"Bearer {keys.member}"})
        assert served.status_code == 200
        doc: dict[str, Any] = served.json()
        report = run_fuzz(doc, keys, role=role, examples=EXAMPLES, seed=14, base_url=server.url)
    assert report.ok, report.summary()
    n_operations = sum(len(item) for item in doc["paths"].values())
    assert len(report.operations) == n_operations >= 70
    # Every operation was really called, and the run reached past the permission checks.
    assert all(sum(c.values()) > 0 for c in report.by_operation.values()), report.summary()
    assert report.server_errors == 0 and 422 not in report.statuses
    assert sum(n for s, n in report.statuses.items() if s < 300) > n_operations, report.summary()
