"""``inhouse.db``: governance (keys, users, groups, usage), conversations and the assistants' tables.

Its ordered migrations (``inhouse.store.sqlite.database`` applies them). Append only: never edit a migration that has
shipped. This file has always used ``schema_migrations``, so it needs no legacy marker.
"""

from __future__ import annotations

from pathlib import Path

from inhouse.store.sqlite.database import Database, Migration, apply_migrations

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "api_keys",
        """
        CREATE TABLE api_keys (
            id           TEXT PRIMARY KEY,          -- 'key_…', its suffix is embedded in the secret
            name         TEXT NOT NULL,
            prefix       TEXT NOT NULL,             -- public start of the secret, shown in listings
            secret_hash  TEXT NOT NULL,             -- sha256 hex of the whole secret
            role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
            -- Users and groups arrive in a later migration, then this column will then reference users(id).
            user_id      TEXT NULL,
            created_at   REAL NOT NULL,             -- unix seconds
            expires_at   REAL NULL,
            revoked_at   REAL NULL,
            last_used_at REAL NULL
        );
        CREATE INDEX api_keys_user ON api_keys (user_id);
        """,
    ),
    Migration(
        2,
        "users_groups_quotas",
        """
        CREATE TABLE users (
            id           TEXT PRIMARY KEY,          -- 'usr_…'
            name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL,
            role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
            disabled     INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at   REAL NOT NULL
        );
        CREATE TABLE user_groups (                  -- not 'groups': GROUPS is an SQL keyword
            id           TEXT PRIMARY KEY,          -- 'grp_…'
            name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
            created_at   REAL NOT NULL
        );
        CREATE TABLE group_members (
            group_id     TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
            user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            added_at     REAL NOT NULL,
            PRIMARY KEY (group_id, user_id)
        );
        CREATE INDEX group_members_user ON group_members (user_id);
        -- Per-key quota overrides: NULL takes the governance default, 0 means unlimited.
        -- (SQLite cannot add a foreign key to api_keys.user_id here, the identity code checks it.)
        ALTER TABLE api_keys ADD COLUMN rpm_limit INTEGER NULL;
        ALTER TABLE api_keys ADD COLUMN tokens_per_day_limit INTEGER NULL;
        CREATE TABLE key_usage (                    -- tokens used per key and UTC day (days since the epoch)
            key_id       TEXT NOT NULL,
            day          INTEGER NOT NULL,
            tokens       INTEGER NOT NULL DEFAULT 0,
            requests     INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (key_id, day)
        );
        """,
    ),
    Migration(
        3,
        "conversations",
        """
        CREATE TABLE conversations (                -- chat history of the web UI (store/conversations.py)
            id           TEXT PRIMARY KEY,          -- 'conv_…'
            owner        TEXT NOT NULL,             -- 'user:<usr_…>' or 'key:<key_…>' (a key bound to no user)
            title        TEXT NOT NULL,
            model        TEXT NULL,
            messages     TEXT NOT NULL,             -- JSON list of {role, content, citations?}
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL
        );
        CREATE INDEX conversations_owner ON conversations (owner, updated_at);
        """,
    ),
    Migration(
        4,
        "key_scopes",
        """
        -- JSON list of the actions a key is limited to (e.g. ["apps:support"] for an embedded widget), NULL: any.
        ALTER TABLE api_keys ADD COLUMN scopes TEXT NULL;
        """,
    ),
    Migration(
        5,
        "support_sessions",
        """
        CREATE TABLE support_sessions (             -- customer-service conversations (apps/support/store.py)
            id           TEXT PRIMARY KEY,          -- 'ses_…' (unguessable: widget visitors share one key)
            owner        TEXT NOT NULL,             -- 'user:<usr_…>' or 'key:<key_…>'
            collections  TEXT NOT NULL,             -- JSON list of collection names the answers come from
            status       TEXT NOT NULL CHECK (status IN ('open', 'handed_over', 'closed')),
            misses       INTEGER NOT NULL DEFAULT 0,-- consecutive questions retrieval could not answer
            handoff      TEXT NULL,                 -- JSON {reason, summary, at} once handed over
            messages     TEXT NOT NULL,             -- JSON list of {role, content, citations?, at}
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL
        );
        CREATE INDEX support_sessions_owner ON support_sessions (owner, updated_at);
        CREATE INDEX support_sessions_status ON support_sessions (status, updated_at);
        """,
    ),
    Migration(
        6,
        "schedule_events",
        """
        CREATE TABLE schedule_events (              -- calendar events per user (apps/schedule/store.py)
            id           TEXT PRIMARY KEY,          -- 'evt_…'
            owner        TEXT NOT NULL,             -- 'user:<usr_…>' or 'key:<key_…>'
            uid          TEXT NOT NULL,             -- iCalendar UID (kept across export/import)
            title        TEXT NOT NULL,
            start_utc    TEXT NOT NULL,             -- ISO 8601 UTC ('…Z'), sorts as text
            end_utc      TEXT NOT NULL,
            tz           TEXT NOT NULL,             -- the zone the event was created in (for display)
            all_day      INTEGER NOT NULL DEFAULT 0 CHECK (all_day IN (0, 1)),
            location     TEXT NOT NULL DEFAULT '',
            description  TEXT NOT NULL DEFAULT '',
            attendees    TEXT NOT NULL DEFAULT '[]',-- JSON list of names / e-mail addresses
            status       TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL,
            UNIQUE (owner, uid)
        );
        CREATE INDEX schedule_events_owner ON schedule_events (owner, start_utc);
        """,
    ),
    Migration(
        7,
        "schedule_events_four_digit_years",
        """
        -- Releases up to 6c87c30 wrote years below 1000 with fewer than four digits ('999-06-01T10:00:00Z'),
        -- which their own reader refused (every read of that calendar failed) and which sorted wrongly as text.
        -- Pad them to the stored form, 'YYYY-MM-DDTHH:MM:SSZ' (20 characters), keeping the instant: the events
        -- become readable again and can be shown, moved or deleted. New writes are checked against the
        -- supported range (apps/dates.py) before they are stored.
        UPDATE schedule_events SET start_utc = substr('000' || start_utc, -20)
         WHERE length(start_utc) BETWEEN 17 AND 19
           AND start_utc GLOB '[0-9]*-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z';
        UPDATE schedule_events SET end_utc = substr('000' || end_utc, -20)
         WHERE length(end_utc) BETWEEN 17 AND 19
           AND end_utc GLOB '[0-9]*-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'
        """,
    ),
    Migration(
        8,
        "responses",
        """
        CREATE TABLE responses (                    -- stored Responses API answers (store/responses.py)
            id           TEXT PRIMARY KEY,          -- 'resp_…'
            owner        TEXT NOT NULL,             -- as conversations.owner
            model        TEXT NOT NULL,
            previous_id  TEXT NULL,                 -- the response this one continued
            messages     TEXT NOT NULL,             -- JSON: the conversation so far as chat messages, answer included
            input_items  TEXT NOT NULL,             -- JSON: this request's input items
            body         TEXT NOT NULL,             -- JSON: the response object as it was returned
            created_at   REAL NOT NULL
        );
        CREATE INDEX responses_owner ON responses (owner, created_at);
        """,
    ),
    Migration(
        9,
        "responses_label",
        """
        -- The label of what a stored response's answer may hold (store/responses.py): a continuation counts it.
        ALTER TABLE responses ADD COLUMN label TEXT NULL;
        """,
    ),
    Migration(
        10,
        "answer_labels",
        """
        CREATE TABLE answer_labels (               -- labels of answers given from labelled material
            digest       TEXT PRIMARY KEY,          -- sha256 of the answer's words (governance/answer_labels.py)
            label_rank   INTEGER NOT NULL,
            created_at   REAL NOT NULL
        );
        CREATE INDEX answer_labels_created ON answer_labels (created_at);
        """,
    ),
    Migration(
        11,
        "scoped_keys_are_members",
        """
        -- Releases before cbdadec let an admin's key be limited to scopes (the support widget's): such a key is a
        -- member key (governance/identity.py checks it at every request too); its row says so from now on.
        UPDATE api_keys SET role = 'member' WHERE scopes IS NOT NULL AND role = 'admin';
        """,
    ),
)


def migrate(db: Database) -> list[int]:
    """Apply pending migrations of ``inhouse.db``; return the versions applied now (empty when up to date)."""
    return apply_migrations(db, MIGRATIONS, what="database")


def open_inhouse_db(path: Path | str, *, busy_timeout_ms: int = 5000) -> Database:
    """Open (creating if needed) and migrate ``inhouse.db``."""
    # secure_delete: a deleted conversation's or stored response's text must leave the file (database.py).
    db = Database(path, busy_timeout_ms=busy_timeout_ms, secure_delete=True)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
