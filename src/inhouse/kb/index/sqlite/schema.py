"""The schema of ``kb.db`` and its ordered migrations (applied by ``inhouse.store.sqlite.database``).

Version 1 is ``_SCHEMA`` plus the ``vec0`` table, whose dimension comes from the embedder (so step 1 is a function
of the connection, not a script). Append only: never edit a step that has shipped.

Files from before ``schema_migrations`` recorded their version in ``kb_meta`` (key ``schema``); ``_legacy_version``
reads it once and the steps up to it are recorded as applied. Those releases refuse a file whose ``kb_meta`` schema
is above theirs, and nothing else stops them: so every file this code opens gets ``LEGACY_FENCE`` there, and a
release from before the migrations refuses it instead of writing into an index it does not understand.
"""

from __future__ import annotations

from typing import Any

from inhouse.errors import InvalidRequest
from inhouse.store.sqlite.database import Database, Migration, apply_migrations, run_step

# kb_meta's 'schema' for releases before schema_migrations (which knew versions up to 3): far above any of them.
LEGACY_FENCE = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kb_collections (
    pk          INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- col_…
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL
);
-- One table for the access lists of collections and documents: owner is a col_… or doc_… id.
CREATE TABLE IF NOT EXISTS kb_acl (
    owner      TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('group', 'key')),
    principal  TEXT NOT NULL,
    PRIMARY KEY (owner, kind, principal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kb_documents (
    pk             INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,            -- doc_…, stable across versions
    collection_pk  INTEGER NOT NULL REFERENCES kb_collections (pk),
    source_path    TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    label_rank     INTEGER NOT NULL,                -- Label.rank: filtered in SQL
    has_acl        INTEGER NOT NULL DEFAULT 0,      -- 1: kb_acl rows owned by this document narrow access
    title          TEXT NOT NULL,
    filename       TEXT NOT NULL,
    mime           TEXT NOT NULL,
    metadata       TEXT NOT NULL DEFAULT '{}',
    version        INTEGER NOT NULL DEFAULT 1,
    created_at     REAL NOT NULL,
    size_bytes     INTEGER NOT NULL,
    chunk_count    INTEGER NOT NULL,
    UNIQUE (collection_pk, source_path)
);
CREATE INDEX IF NOT EXISTS kb_documents_sha ON kb_documents (collection_pk, sha256);
CREATE TABLE IF NOT EXISTS kb_files (
    document_pk INTEGER PRIMARY KEY REFERENCES kb_documents (pk),
    data        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_chunks (
    pk           INTEGER PRIMARY KEY,               -- also the rowid in kb_fts and kb_vec
    id           TEXT NOT NULL UNIQUE,              -- chk_…
    document_pk  INTEGER NOT NULL REFERENCES kb_documents (pk),
    ordinal      INTEGER NOT NULL,
    content      TEXT NOT NULL,
    section      TEXT NOT NULL DEFAULT '',
    page_start   INTEGER NULL,
    page_end     INTEGER NULL,
    token_count  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kb_chunks_doc ON kb_chunks (document_pk, ordinal);
CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5 (text, tokenize = 'trigram');
"""

# 2: a change log of chunk rows (by document), written by triggers so that every writer, including one that
# predates the log, leaves a trace; searchers replay it to keep their resident copy of the vectors current.
# AUTOINCREMENT: a sequence number is never reused, even after the log is pruned. Existing databases need no
# backfill: a searcher with no copy loads every vector once. And a covering index chunk -> document, so the
# access rule on keyword matches reads 2.5 MB of index instead of the chunk rows (or every allowed chunk).
_V2 = """
CREATE INDEX IF NOT EXISTS kb_chunks_pk_doc ON kb_chunks (pk, document_pk);
CREATE TABLE IF NOT EXISTS kb_vec_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    document_pk  INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS kb_chunks_logi AFTER INSERT ON kb_chunks BEGIN
    INSERT INTO kb_vec_log (document_pk) VALUES (new.document_pk);
END;
CREATE TRIGGER IF NOT EXISTS kb_chunks_logd AFTER DELETE ON kb_chunks BEGIN
    INSERT INTO kb_vec_log (document_pk) VALUES (old.document_pk);
END;
CREATE TRIGGER IF NOT EXISTS kb_chunks_logu AFTER UPDATE ON kb_chunks BEGIN
    INSERT INTO kb_vec_log (document_pk) VALUES (old.document_pk), (new.document_pk);
END;
INSERT OR IGNORE INTO kb_meta (key, value) VALUES ('vec_log_pruned', '0');
"""

# 3: a word index beside the trigram one. Latin-script query words are matched as whole words with column weights
# (document title, section path, text), and words found in most chunks are left out of the query (their document
# frequencies come from the vocabulary table): a trigram phrase of a common word ("function": 6 trigrams, "ion" in
# most chunks) costs the posting lists of every trigram. Contentless (the text lives in kb_chunks) with deletes, so
# a removed chunk's words leave with it. Backfilled from the chunk rows.
_V3 = """
CREATE VIRTUAL TABLE IF NOT EXISTS kb_words USING fts5 (title, section, body, content = '', contentless_delete = 1,
                                                        tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS kb_words_vocab USING fts5vocab (kb_words, 'row');
INSERT INTO kb_words (rowid, title, section, body)
    SELECT k.pk, d.title, k.section, k.content FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk;
"""


_V4 = "ALTER TABLE kb_collections ADD COLUMN sketch_questions INTEGER NOT NULL DEFAULT 0;"

# 5: FTS5's secure-delete (SQLite 3.42): a deleted row's postings leave the index with the row, so the terms of a
# removed document, and of a replaced document's old version, are gone at once. Before, a delete merged the whole
# index to drop them (about a second per deleted document at 20k chunks, 4 s at 100k) and a replacement never did,
# so an old version's text stayed in the segments until some later merge. The word index becomes an external-content
# table over its rows' own text (``kb_words_src``): a contentless one cannot be told which terms a deleted row had
# (its deletes are tombstones, and secure-delete cannot apply), and FTS5 can now check it against that text. The
# drop zeroes the old word index's pages (``secure_delete``); the optimize drops what earlier deletes left in the
# trigram index. The option is stored in the tables: FTS5 older than 3.42 (Debian 12's stdlib ``sqlite3`` and
# ``sqlite3`` shell) refuses to read these two tables from now on; inhouse reads ``kb.db`` through apsw.
_V5 = """
DROP TABLE kb_words_vocab;
DROP TABLE kb_words;
CREATE VIEW kb_words_src AS
    SELECT k.pk AS pk, d.title AS title, k.section AS section, k.content AS body
    FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk;
CREATE VIRTUAL TABLE kb_words USING fts5 (title, section, body, content = 'kb_words_src', content_rowid = 'pk',
                                          tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE kb_words_vocab USING fts5vocab (kb_words, 'row');
INSERT INTO kb_words (kb_words, rank) VALUES ('secure-delete', 1);
INSERT INTO kb_words (kb_words) VALUES ('rebuild');
INSERT INTO kb_fts (kb_fts, rank) VALUES ('secure-delete', 1);
INSERT INTO kb_fts (kb_fts) VALUES ('optimize');
"""


# 6: which documents each audited run (an ``inhouse ingest``, an upload, a relabel or delete over HTTP: the audit
# record's request id) changed, written in the transaction of the change itself. A run killed outright (kill -9, the
# OOM killer) cannot say what it committed; this table can, so the record that closes it names exactly those
# documents. Rows of finished runs are deleted (``forget_run``, ``prune_journal``).
_V6 = """
CREATE TABLE kb_run_journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    run          TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    action       TEXT NOT NULL
);
CREATE INDEX kb_run_journal_run ON kb_run_journal (run);
"""


# 7: indexes for the access rule (``access.py``): a member's allowed documents are reached from what names them, the
# documents without a list of their own of each collection within a clearance, and the entries of document lists
# naming a group or key, instead of testing every document of the collection (2.5 µs each).
_V7 = """
CREATE INDEX IF NOT EXISTS kb_documents_access ON kb_documents (collection_pk, has_acl, label_rank);
CREATE INDEX IF NOT EXISTS kb_acl_principal ON kb_acl (kind, principal, owner);
"""


def migrations(dim: int) -> tuple[Migration, ...]:
    def v1(conn: Any) -> None:
        run_step(conn, _SCHEMA)
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS kb_vec USING vec0 (embedding float[{int(dim)}]"
                     " distance_metric=cosine)")

    return (Migration(1, "collections_documents_chunks_fts_vec", v1), Migration(2, "vec_log_and_chunk_doc_index", _V2),
            Migration(3, "word_index", _V3), Migration(4, "collection_sketch_questions", _V4),
            Migration(5, "fts_secure_delete", _V5), Migration(6, "run_journal", _V6),
            Migration(7, "access_rule_indexes", _V7))


def _legacy_version(conn: Any) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kb_meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM kb_meta WHERE key = 'schema'").fetchone()
    return int(row[0]) if row else 0


def migrate_index(db: Database, dim: int) -> list[int]:
    """Bring ``kb.db`` to the newest schema, then check (or record) the dimension of its vectors; return the versions
    applied now."""
    applied = apply_migrations(db, migrations(dim), what="index", legacy_version=_legacy_version)
    with db.transaction() as c:
        fence = c.execute("SELECT value FROM kb_meta WHERE key = 'schema'").fetchone()
        if fence is None or fence[0] != str(LEGACY_FENCE):
            # An old release opening this file (a downgrade) wrote chunks without their words and left the
            # keyword index malformed; with the fence it says the file is newer and touches nothing.
            c.execute("INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('schema', ?)", (str(LEGACY_FENCE),))
        row = c.execute("SELECT value FROM kb_meta WHERE key = 'dim'").fetchone()
        if row is None:
            c.execute("INSERT INTO kb_meta (key, value) VALUES ('dim', ?)", (str(dim),))
        elif int(row[0]) != dim:
            raise InvalidRequest(
                f"The index at {db.path} holds {row[0]}-d vectors but the embedder makes {dim}-d ones; "
                "use the embedder it was built with or re-ingest into a new data directory."
            )
    return applied


def schema_version(db: Database) -> int:
    return int(db.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations"))
