"""Upstream delivery: per-instance upload attempts and the log of REST sends to the cloud."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (300, "upstream", """
CREATE TABLE instance_uploads (
    sop_uid      TEXT PRIMARY KEY,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_status  TEXT,
    last_at      REAL NOT NULL,
    confirmed_at REAL
);

CREATE TABLE upstream_sends (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    http_status     INTEGER,
    outcome         TEXT NOT NULL,
    message         TEXT,
    at              REAL NOT NULL
);
CREATE INDEX upstream_sends_key ON upstream_sends (kind, key);
CREATE INDEX instances_delivered ON instances (state, delivered_at);
"""),
]
