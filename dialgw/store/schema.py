"""The schema as an ordered list of migrations.

Each migration is a tuple of statements; migration ``n`` (1-based) takes the
database from version ``n - 1`` to ``n``. Never edit a released migration:
append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: apps, caller IDs, sessions, session events (the webhook outbox),
    # idempotency keys.
    (
        """CREATE TABLE apps (
            app_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            api_key_hash TEXT NOT NULL,
            webhook_url TEXT NOT NULL,
            webhook_secret TEXT NOT NULL,
            previous_webhook_secret TEXT,
            previous_secret_expires_at {timestamp},
            enabled INTEGER NOT NULL,
            dials_per_sec {real},
            burst INTEGER,
            max_concurrent INTEGER,
            created_at {timestamp} NOT NULL
        )""",
        """CREATE TABLE app_caller_ids (
            app_id TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
            number TEXT NOT NULL,
            PRIMARY KEY (app_id, number)
        )""",
        """CREATE TABLE sessions (
            session_uuid TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            fs_node TEXT NOT NULL,
            channel_uuid TEXT NOT NULL,
            job_uuid TEXT,
            to_number TEXT NOT NULL,
            from_number TEXT NOT NULL,
            timeout_sec INTEGER NOT NULL,
            max_duration_sec INTEGER NOT NULL,
            metadata_json TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at {timestamp} NOT NULL,
            ringing_at {timestamp},
            early_media_at {timestamp},
            answered_at {timestamp},
            ended_at {timestamp},
            hangup_cause TEXT,
            request_id TEXT
        )""",
        "CREATE INDEX sessions_node_status ON sessions (node_id, status)",
        "CREATE INDEX sessions_app_status ON sessions (app_id, status)",
        "CREATE INDEX sessions_channel ON sessions (channel_uuid)",
        """CREATE TABLE session_events (
            event_id TEXT PRIMARY KEY,
            session_uuid TEXT NOT NULL REFERENCES sessions (session_uuid) ON DELETE CASCADE,
            sequence INTEGER NOT NULL,
            event TEXT NOT NULL,
            status TEXT NOT NULL,
            occurred_at {timestamp} NOT NULL,
            hangup_cause TEXT,
            duration_sec INTEGER,
            delivery_state TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            next_attempt_at {timestamp},
            delivered_at {timestamp},
            UNIQUE (session_uuid, sequence)
        )""",
        "CREATE INDEX session_events_due ON session_events (delivery_state, next_attempt_at)",
        """CREATE TABLE idempotency_keys (
            app_id TEXT NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
            idempotency_key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            session_uuid TEXT NOT NULL REFERENCES sessions (session_uuid) ON DELETE CASCADE,
            response_status INTEGER NOT NULL,
            response_body TEXT NOT NULL,
            created_at {timestamp} NOT NULL,
            PRIMARY KEY (app_id, idempotency_key)
        )""",
        "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
    ),
    # 2: every webhook delivery attempt and its result.
    (
        """CREATE TABLE webhook_attempts (
            event_id TEXT NOT NULL REFERENCES session_events (event_id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            attempted_at {timestamp} NOT NULL,
            status_code INTEGER,
            error TEXT,
            outcome TEXT NOT NULL,
            PRIMARY KEY (event_id, attempt)
        )""",
    ),
    # 3: each app's count of live sessions, kept in the transactions that
    # create a session and end one, so that the per-dial max_concurrent
    # check reads one row instead of counting the app's live calls.
    (
        "ALTER TABLE apps ADD COLUMN live_sessions INTEGER NOT NULL DEFAULT 0",
        "UPDATE apps SET live_sessions = (SELECT COUNT(*) FROM sessions s "
        "WHERE s.app_id = apps.app_id AND s.status <> 'ended')",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

#: Every table holding data, parents before children: the order to copy
#: them in (`Store.copy_from_sqlite`). A migration adding a table adds it here.
DATA_TABLES = (
    "apps",
    "app_caller_ids",
    "sessions",
    "session_events",
    "webhook_attempts",
    "idempotency_keys",
)
