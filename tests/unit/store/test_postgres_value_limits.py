"""Values past a PostgreSQL limit that SQLite holds: a key's limits take any count the API allows (up to 2^63-1) on
both stores, and what still reaches one of the server's limits is a 400 ``InvalidRequest``, never a driver error
(a 500, a CLI traceback)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inhouse.apps.schedule.calendar import Interval
from inhouse.errors import InvalidRequest
from inhouse.governance.identity import KeyStore
from inhouse.governance.store import GovernanceStore
from inhouse.store.postgres.assistants import PostgresEventStore
from inhouse.store.postgres.database import PostgresDatabase, migrate
from inhouse.store.postgres.governance import PostgresGovernanceStore
from inhouse.store.postgres.schema import INHOUSE
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.testing.conversation_contract import ANN

BIG = 5_000_000_000  # tokens a day: past int4, well inside the API's bound


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def governance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GovernanceStore]:
    if request.param == "sqlite":
        db = open_inhouse_db(tmp_path / "inhouse.db")
        yield SqliteGovernanceStore(db)
        db.close()
    else:
        yield PostgresGovernanceStore(request.getfixturevalue("pg"))


def test_key_limits_past_int32_are_kept_on_both_stores(governance: GovernanceStore) -> None:
    keys = KeyStore(governance)
    record, _ = keys.create_key("batch jobs", rpm_limit=3_000_000_000, tokens_per_day_limit=BIG)
    assert (record.rpm_limit, record.tokens_per_day_limit) == (3_000_000_000, BIG)
    keys.set_limits(record.id, rpm_limit=0, tokens_per_day_limit=2**63 - 1)
    stored = governance.get_key(record.id)
    assert stored is not None and (stored.rpm_limit, stored.tokens_per_day_limit) == (0, 2**63 - 1)


@pytest.mark.integration
def test_the_migration_widens_the_limits_of_an_existing_database(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url)
    try:
        migrate(db, "inhouse", [m for m in INHOUSE if m.version <= 7])  # a database written before the step
        db.execute("INSERT INTO api_keys (id, name, prefix, secret_hash, role, created_at, tokens_per_day_limit)"
                   " VALUES ('key_old', 'old', 'ih_old', 'x', 'member', 0, 1000)")
        assert migrate(db, "inhouse", [m for m in INHOUSE if m.version <= 8]) == [8]
        types = {r["column_name"]: r["data_type"] for r in db.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'api_keys'"
            " AND column_name IN ('rpm_limit', 'tokens_per_day_limit')")}
        assert types == {"rpm_limit": "bigint", "tokens_per_day_limit": "bigint"}
        assert db.scalar("SELECT tokens_per_day_limit FROM api_keys WHERE id = 'key_old'") == 1000
    finally:
        db.close()


@pytest.mark.integration
def test_a_number_out_of_its_columns_range_is_a_bad_request(pg: PostgresDatabase) -> None:
    with pytest.raises(InvalidRequest) as err:
        pg.execute("UPDATE api_keys SET rpm_limit = %s", (2**63,))  # numeric past bigint (SQLSTATE 22003)
    assert err.value.code == "value_out_of_range"


@pytest.mark.integration
def test_a_value_past_a_server_limit_is_a_bad_request(pg: PostgresDatabase) -> None:
    """SQLSTATE class 54: a btree key over 2,704 bytes (a calendar UID of 5,000 characters), a word over 2,046 bytes
    in a tsvector. The callers should bound what they write; this is the safety net when one does not."""
    events = PostgresEventStore(pg)
    day = Interval(datetime(2027, 1, 5, 2, tzinfo=UTC), datetime(2027, 1, 5, 3, tzinfo=UTC))
    uid = secrets.token_hex(2500) + "@example.com"  # random: a repeated text would be compressed to fit
    with pytest.raises(InvalidRequest, match="'uid' is longer than 1000"):  # bounded before it is written
        events.create(ANN, "Quarterly review", day, tz="UTC", uid=uid)
    with pytest.raises(InvalidRequest) as err:  # the safety net, had it not been
        pg.execute("INSERT INTO schedule_events (id, owner, uid, title, start_utc, end_utc, tz, status, created_at, "
                   "updated_at) VALUES ('evt_x', 'o', %s, 't', 's', 'e', 'UTC', 'confirmed', 0, 0)", (uid,))
    assert err.value.code == "value_too_long"
    with pytest.raises(InvalidRequest) as err:
        pg.scalar("SELECT %s::tsvector", ("x" * 3000,))
    assert err.value.code == "value_too_long"
    assert events.create(ANN, "Quarterly review", day, tz="UTC", uid="short@example.com").uid == "short@example.com"


@pytest.mark.integration
def test_a_document_path_past_the_index_limit_is_a_bad_request(postgres_url: str) -> None:
    """``inhouse ingest`` reports it as that file's error and goes on (it stopped with a traceback)."""
    from inhouse.governance.labels import Label
    from inhouse.kb.access import Acl
    from inhouse.kb.document import Chunk
    from inhouse.kb.index.postgres import PostgresIndexStore
    from inhouse.kb.index.protocol import NewDocument
    from inhouse.testing.fake_embedder import FakeEmbedder

    emb, store = FakeEmbedder(384), PostgresIndexStore(postgres_url, dim=384)
    try:
        col = store.create_collection("general", acl=Acl()).id
        path = "/".join(secrets.token_hex(100) for _ in range(14)) + "/notes.txt"  # ~2,800 bytes
        chunk = Chunk(index=0, text="notes\nThe backup tape is in vault seven.", content="The backup tape is in vault "
                      "seven.", token_count=8, kind="paragraph", section="")
        doc = NewDocument(col, path, "0" * 64, Label.INTERNAL, None, "notes", "notes.txt", "text/plain", b"x",
                          [chunk], emb.embed_passages([chunk.text]))
        with pytest.raises(InvalidRequest) as err:
            store.put_document(doc)
        assert err.value.code == "value_too_long"
        assert store.list_documents(col) == []
    finally:
        store.close()
