"""Reports: warnings and report hash on exams; rows that cannot be keyed (no accessionNo)."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (200, "reports", """
ALTER TABLE exams ADD COLUMN warnings TEXT;
ALTER TABLE exams ADD COLUMN report_hash TEXT;
ALTER TABLE exams ADD COLUMN last_type INTEGER;
CREATE INDEX exams_updated ON exams (updated_at);

CREATE TABLE exam_rejects (
    id            INTEGER PRIMARY KEY,
    hospital_id   TEXT NOT NULL,
    event_type    INTEGER,
    content_hash  TEXT NOT NULL UNIQUE,
    record        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    last_seen     REAL NOT NULL,
    seen          INTEGER NOT NULL DEFAULT 1
);
"""),
]
