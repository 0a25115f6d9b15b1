"""The tables of the index in PostgreSQL (migration scope ``kb``), mirroring ``kb.db`` but with the keyword index
and the vector in the chunk row: ``tsv`` (a ``tsvector`` of ``kb.index.keywords.index_terms``, GIN-indexed) and
``embedding`` (``vector(dim)``, HNSW-indexed for cosine distance). Step 1 depends on the embedder's dimension and
creates the ``vector`` extension (a superuser or the database owner on a server where it is trusted must be able
to; on a managed server, create it beforehand)."""

from __future__ import annotations

from typing import Any

from inhouse.errors import InvalidRequest
from inhouse.kb.index.postgres.terms import tsvector_literal
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


_REWEIGH_BATCH = 2000
# Built after a bulk load rather than row by row (``load.py``): the same definitions either way.
SEARCH_INDEXES = (
    "CREATE INDEX kb_chunks_tsv ON kb_chunks USING gin (tsv)",
    "CREATE INDEX kb_chunks_embedding ON kb_chunks USING hnsw (embedding vector_cosine_ops)",
)


def reweigh_keyword_terms(conn: Any) -> None:
    """2: every chunk's ``tsv`` rewritten with weights (title ``A``, section path ``B``, text ``D``) from the row's
    own ``text`` and ``section``, as ``terms.tsvector_literal`` now writes it; the GIN index follows the updates.
    6: the same rewrite, for the terms of CJK text right after Latin letters or digits ("X200路由器"), which version 5
    and earlier kept in one Latin term and so never indexed as CJK windows.
    8: again, for terms read from folded text (full-width letters and digits half-width, soft hyphens and zero-width
    characters dropped, NFC: ``keywords.fold_text``) and amounts with thousands separators kept whole."""
    last = 0
    while True:
        rows = conn.execute("SELECT pk, text, section FROM kb_chunks WHERE pk > %s ORDER BY pk LIMIT %s",
                            (last, _REWEIGH_BATCH)).fetchall()
        if not rows:
            return
        conn.execute("UPDATE kb_chunks k SET tsv = x.lit::tsvector FROM unnest(%s::bigint[], %s::text[]) AS x(pk, lit)"
                     " WHERE k.pk = x.pk", ([r["pk"] for r in rows], [tsvector_literal(r["text"], r["section"])
                                                                        for r in rows]))
        last = rows[-1]["pk"]


# 3: the change log of the chunks' vectors, which searchers replay into their resident copies (``resident.py``).
# Statement triggers with transition tables: one statement of many rows (a bulk load) writes one entry per document.
_V3 = """
CREATE TABLE kb_vec_log (
    seq          bigserial PRIMARY KEY,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    document_pk  bigint NOT NULL
);
CREATE INDEX kb_vec_log_xid ON kb_vec_log (xid);
CREATE FUNCTION kb_vec_log_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kb_vec_log (document_pk) SELECT DISTINCT document_pk FROM changed;
    RETURN NULL;
END $$;
CREATE FUNCTION kb_vec_log_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kb_vec_log (document_pk) SELECT document_pk FROM before UNION SELECT document_pk FROM after;
    RETURN NULL;
END $$;
CREATE TRIGGER kb_chunks_log_insert AFTER INSERT ON kb_chunks REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION kb_vec_log_changed();
CREATE TRIGGER kb_chunks_log_delete AFTER DELETE ON kb_chunks REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION kb_vec_log_changed();
CREATE TRIGGER kb_chunks_log_update AFTER UPDATE ON kb_chunks REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION kb_vec_log_updated();
-- TRUNCATE names no rows: every searcher that synced before it reloads everything, as after a pruned log.
CREATE FUNCTION kb_vec_log_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kb_meta SET value = greatest(value::bigint, pg_current_xact_id()::text::bigint + 1)::text
        WHERE key = 'vec_log_pruned';
    RETURN NULL;
END $$;
CREATE TRIGGER kb_chunks_log_truncate AFTER TRUNCATE ON kb_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION kb_vec_log_truncated();
INSERT INTO kb_meta (key, value) VALUES ('vec_log_pruned', '0') ON CONFLICT (key) DO NOTHING;
"""


def vector_change_log(conn: Any) -> None:
    """3: ``kb_vec_log`` and its triggers. Nothing to backfill: a searcher with no copy loads every vector once."""
    conn.execute(_V3)


# 5: the run journal (see the SQLite schema's step 6): the documents each audited run changed, written in the
# transaction of the change.
_V5 = """
CREATE TABLE kb_run_journal (
    seq          bigserial PRIMARY KEY,
    run          text NOT NULL,
    document_id  text NOT NULL,
    action       text NOT NULL
);
CREATE INDEX kb_run_journal_run ON kb_run_journal (run)"""


# 7: indexes for the access rule (``access.py``), as SQLite's step 7: a member's allowed documents are reached from
# what names them instead of testing every document of the collection.
_V7 = """
CREATE INDEX IF NOT EXISTS kb_documents_access ON kb_documents (collection_pk, has_acl, label_rank);
CREATE INDEX IF NOT EXISTS kb_acl_principal ON kb_acl (kind, principal, owner)"""


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

    return (PgMigration(1, "collections_documents_chunks_vectors", v1),
            PgMigration(2, "keyword_terms_weighted_by_title_and_section", reweigh_keyword_terms),
            PgMigration(3, "vector_change_log", vector_change_log),
            PgMigration(4, "collection_sketch_questions",
                        "ALTER TABLE kb_collections ADD COLUMN sketch_questions boolean NOT NULL DEFAULT false"),
            PgMigration(5, "run_journal", _V5),
            PgMigration(6, "keyword_terms_split_latin_from_cjk", reweigh_keyword_terms),
            PgMigration(7, "access_rule_indexes", _V7),
            PgMigration(8, "keyword_terms_fold_width_and_group_numbers", reweigh_keyword_terms))


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
