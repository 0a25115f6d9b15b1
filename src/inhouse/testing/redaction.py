"""A Redactor for tests: warmed up once, knowing the directory's names it is given, and proven never to reach the
network (Presidio and tldextract run offline here; a download attempt fails the test that made it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from inhouse.governance.pii.redact import Redactor
from inhouse.testing.network_guard import deny_external_connections


@contextlib.contextmanager
def offline_redactor(names: list[str]) -> Iterator[Redactor]:
    with deny_external_connections() as attempts:
        r = Redactor(names=names)
        r.warm_up()
        yield r
    assert attempts == [], attempts
