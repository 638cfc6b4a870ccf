"""Foundation: nodes sharing one store (PostgreSQL). Each node beats in `nodes`; `leases`
holds named leases (the scheduler's leader); a task or an instance whose files are in one
node's spool names that node (NULL: any node, and always on a single SQLite host)."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (600, "nodes", """
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    tasks_done INTEGER NOT NULL DEFAULT 0,
    detail     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    owner  TEXT NOT NULL,
    since  REAL NOT NULL,
    until  REAL NOT NULL
);

ALTER TABLE tasks ADD COLUMN node TEXT;
ALTER TABLE instances ADD COLUMN node TEXT;
CREATE INDEX instances_node ON instances (node, state);
"""),
]
