"""The PostgreSQL database the store tests share: migrated for the ``inhouse`` and ``audit`` schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inhouse.store.postgres.database import PostgresDatabase, migrate
from inhouse.store.postgres.schema import AUDIT, INHOUSE


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresDatabase]:
    db = PostgresDatabase(postgres_url)
    migrate(db, "inhouse", INHOUSE)
    migrate(db, "audit", AUDIT)
    yield db
    db.close()
