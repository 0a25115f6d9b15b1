"""The tables of the index in PostgreSQL (migration scope ``kb``), mirroring ``kb.db`` but with the keyword index
and the vector in the chunk row: ``tsv`` (a ``tsvector`` of ``kb.index.keywords.index_terms``, GIN-indexed) and
``embedding`` (``vector(dim)``, HNSW-indexed for cosine distance). Step 1 depends on the embedder's dimension and
creates the ``vector`` extension (a superuser or the database owner on a server where it is trusted must be able
to; on a managed server, create it beforehand)."""

from __future__ import annotations

from typing import Any

from inhouse.errors import InvalidRequest
from inhouse.store.postgres.database import PgMigration, PostgresDatabase, migrate

_V1 = """
CREATE TABLE kb_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE kb_collections (
    pk          bigserial PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  double precision NOT NULL
);
CREATE UNIQUE INDEX kb_collections_name ON kb_collections (lower(name));
CREATE TABLE kb_acl (
    owner      text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('group', 'key')),
    principal  text NOT NULL,
    PRIMARY KEY (owner, kind, principal)
);
CREATE TABLE kb_documents (
    pk             bigserial PRIMARY KEY,
    id             text NOT NULL UNIQUE,
    collection_pk  bigint NOT NULL REFERENCES kb_collections (pk),
    source_path    text NOT NULL,
    sha256         text NOT NULL,
    label_rank     integer NOT NULL,
    has_acl        boolean NOT NULL DEFAULT false,
    title          text NOT NULL,
    filename       text NOT NULL,
    mime           text NOT NULL,
    metadata       text NOT NULL DEFAULT '{}',
    version        integer NOT NULL DEFAULT 1,
    created_at     double precision NOT NULL,
    size_bytes     bigint NOT NULL,
    chunk_count    integer NOT NULL,
    UNIQUE (collection_pk, source_path)
);
CREATE INDEX kb_documents_sha ON kb_documents (collection_pk, sha256);
CREATE TABLE kb_files (
    document_pk bigint PRIMARY KEY REFERENCES kb_documents (pk) ON DELETE CASCADE,
    data        bytea NOT NULL
);
"""


# Built after a bulk load rather than row by row (``load.py``): the same definitions either way.
SEARCH_INDEXES = (
    "CREATE INDEX kb_chunks_tsv ON kb_chunks USING gin (tsv)",
    "CREATE INDEX kb_chunks_embedding ON kb_chunks USING hnsw (embedding vector_cosine_ops)",
)


def migrations(dim: int) -> tuple[PgMigration, ...]:
    def v1(conn: Any) -> None:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(_V1)
        conn.execute(f"""
CREATE TABLE kb_chunks (
    pk           bigserial PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    document_pk  bigint NOT NULL REFERENCES kb_documents (pk) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    content      text NOT NULL,
    section      text NOT NULL DEFAULT '',
    page_start   integer NULL,
    page_end     integer NULL,
    token_count  integer NOT NULL,
    text         text NOT NULL,
    tsv          tsvector NOT NULL,
    embedding    vector({int(dim)}) NOT NULL
);
CREATE INDEX kb_chunks_doc ON kb_chunks (document_pk, ordinal)""")
        for ddl in SEARCH_INDEXES:
            conn.execute(ddl)

    return (PgMigration(1, "collections_documents_chunks_vectors", v1),)


def migrate_index(db: PostgresDatabase, dim: int) -> None:
    """Bring the ``kb`` tables to the newest schema, then check (or record) the dimension of their vectors."""
    migrate(db, "kb", migrations(dim))
    with db.transaction() as conn:
        row = conn.execute("SELECT value FROM kb_meta WHERE key = 'dim'").fetchone()
        if row is None:
            conn.execute("INSERT INTO kb_meta (key, value) VALUES ('dim', %s)", (str(dim),))
        elif int(row["value"]) != dim:
            raise InvalidRequest(
                f"The index in PostgreSQL holds {row['value']}-d vectors but the embedder makes {dim}-d ones; "
                "use the embedder it was built with or re-ingest into a new database.")
