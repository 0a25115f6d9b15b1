"""The tables of the PostgreSQL store, as ordered migrations per scope (append only).

They mirror the SQLite tables column for column, with the same text encodings: JSON columns are text holding the
same JSON, times are seconds since the epoch as ``double precision``, so ``inhouse store migrate`` copies values
unchanged and the audit chain's hashes (computed over stored text) stay valid. Differences: booleans are
``boolean``; names unique regardless of case are unique indexes on ``lower(name)`` (SQLite: ``COLLATE NOCASE``;
the names allowed are ASCII); the audit head is a row (``audit_head``), written in the append's own transaction.
"""

from __future__ import annotations

from inhouse.store.postgres.database import PgMigration

INHOUSE: tuple[PgMigration, ...] = (
    PgMigration(1, "governance", """
CREATE TABLE users (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    display_name text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'member')),
    disabled     boolean NOT NULL DEFAULT false,
    created_at   double precision NOT NULL
);
CREATE UNIQUE INDEX users_name ON users (lower(name));
CREATE TABLE user_groups (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    created_at   double precision NOT NULL
);
CREATE UNIQUE INDEX user_groups_name ON user_groups (lower(name));
CREATE TABLE group_members (
    group_id     text NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at     double precision NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE api_keys (
    id                   text PRIMARY KEY,
    name                 text NOT NULL,
    prefix               text NOT NULL,
    secret_hash          text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('admin', 'member')),
    user_id              text NULL,
    created_at           double precision NOT NULL,
    expires_at           double precision NULL,
    revoked_at           double precision NULL,
    last_used_at         double precision NULL,
    rpm_limit            integer NULL,
    tokens_per_day_limit integer NULL,
    scopes               text NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE TABLE key_usage (
    key_id       text NOT NULL,
    day          integer NOT NULL,
    tokens       bigint NOT NULL DEFAULT 0,
    requests     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
"""),
    PgMigration(2, "conversations", """
CREATE TABLE conversations (
    id           text PRIMARY KEY,
    owner        text NOT NULL,
    title        text NOT NULL,
    model        text NULL,
    messages     text NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner, updated_at);
"""),
    # SQLite's inhouse.db migration 8: stored Responses API answers (store/responses.py).
    PgMigration(3, "responses", """
CREATE TABLE responses (
    id           text PRIMARY KEY,
    owner        text NOT NULL,
    model        text NOT NULL,
    previous_id  text NULL,
    messages     text NOT NULL,
    input_items  text NOT NULL,
    body         text NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX responses_owner ON responses (owner, created_at);
"""),
    # SQLite's inhouse.db steps 5-7: the assistants' tables (apps/support/store.py, apps/schedule/store.py). The
    # instants are ISO text in UTC that sort as text: byte order ("C"), whatever the database's collation. Step 7's
    # repair of short years has no counterpart: only rows the checked code wrote (or copied, repaired) arrive here.
    PgMigration(4, "assistants", """
CREATE TABLE support_sessions (
    id           text PRIMARY KEY,
    owner        text NOT NULL,
    collections  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'handed_over', 'closed')),
    misses       integer NOT NULL DEFAULT 0,
    handoff      text NULL,
    messages     text NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL
);
CREATE INDEX support_sessions_owner ON support_sessions (owner, updated_at);
CREATE INDEX support_sessions_status ON support_sessions (status, updated_at);
CREATE TABLE schedule_events (
    id           text COLLATE "C" PRIMARY KEY,
    owner        text NOT NULL,
    uid          text NOT NULL,
    title        text NOT NULL,
    start_utc    text COLLATE "C" NOT NULL,
    end_utc      text COLLATE "C" NOT NULL,
    tz           text NOT NULL,
    all_day      boolean NOT NULL DEFAULT false,
    location     text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    attendees    text NOT NULL DEFAULT '[]',
    status       text NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    UNIQUE (owner, uid)
);
CREATE INDEX schedule_events_owner ON schedule_events (owner, start_utc);
"""),
    # The requests/minute windows every ingress shares (store/postgres/rates.py); SQLite has none: one process
    # keeps them in memory. UNLOGGED: not written to the WAL (an admission is a write on every request), emptied
    # by a crash of the server, which at worst grants a key one more minute of requests.
    PgMigration(5, "request_windows", """
CREATE UNLOGGED TABLE request_windows (
    key_id       text NOT NULL,
    at           double precision NOT NULL
);
CREATE INDEX request_windows_key ON request_windows (key_id, at);
CREATE INDEX request_windows_at ON request_windows (at);
"""),
    # SQLite's inhouse.db migration 9: the label a stored response's answer carries (store/responses.py).
    PgMigration(6, "responses_label", "ALTER TABLE responses ADD COLUMN label text NULL"),
    # SQLite's inhouse.db migration 10 (governance/answer_labels.py).
    PgMigration(7, "answer_labels", """
CREATE TABLE answer_labels (
    digest       text PRIMARY KEY,
    label_rank   integer NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX answer_labels_created ON answer_labels (created_at);
"""),
    # A key's limits take any count up to 2^63-1 (api/bounds.py; SQLite's INTEGER holds them): as integer, a limit
    # of 5,000,000,000 tokens a day was refused, and an embedded install holding one could not be migrated. The
    # other integer columns hold values inhouse counts itself (a day number, a label rank, misses).
    PgMigration(8, "key_limits_bigint", """
ALTER TABLE api_keys ALTER COLUMN rpm_limit TYPE bigint, ALTER COLUMN tokens_per_day_limit TYPE bigint;
"""),
    # SQLite's inhouse.db migration 11: a key limited to scopes is a member key (governance/identity.py).
    PgMigration(9, "scoped_keys_are_members",
                "UPDATE api_keys SET role = 'member' WHERE scopes IS NOT NULL AND role = 'admin'"),
)

AUDIT: tuple[PgMigration, ...] = (
    PgMigration(1, "audit_records", """
CREATE TABLE audit_records (
    seq          bigint PRIMARY KEY,
    ts           text NOT NULL,
    kind         text NOT NULL,
    action       text NOT NULL,
    request_id   text,
    actor_key_id text,
    user_id      text,
    resource     text,
    model        text,
    location     text,
    label        text,
    documents    text NOT NULL,
    redactions   text NOT NULL,
    outcome      text NOT NULL,
    reason       text,
    details      text NOT NULL,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX audit_records_ts ON audit_records (ts);
CREATE INDEX audit_records_action ON audit_records (action);
CREATE INDEX audit_records_actor ON audit_records (actor_key_id);
CREATE TABLE audit_head (
    id           integer PRIMARY KEY CHECK (id = 1),
    head         text NOT NULL
);
-- Our own code never updates or deletes records; this makes a bug (or a careless tool) fail loudly. It is no
-- protection against someone who can alter the tables: the chain and the signed head are.
CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
"""),
    # The requests that never ended (``AuditLog.unfinished``) are found by request id.
    PgMigration(2, "audit_records_request", "CREATE INDEX audit_records_request ON audit_records (request_id)"),
)
