"""Foundation tables: tasks, exams, studies, instances, watermarks, jobs, sessions, audit."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "foundation", """
CREATE TABLE tasks (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'dead', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    run_after    REAL NOT NULL,
    lease_owner  TEXT,
    lease_until  REAL,
    rerun        INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    result       TEXT,
    exam_id      INTEGER,
    study_uid    TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    finished_at  REAL,
    UNIQUE (kind, key)
);
CREATE INDEX tasks_due ON tasks (state, run_after);
CREATE INDEX tasks_study ON tasks (study_uid);
CREATE INDEX tasks_exam ON tasks (exam_id);

CREATE TABLE exams (
    id                INTEGER PRIMARY KEY,
    hospital_id       TEXT NOT NULL,
    accession_no      TEXT NOT NULL,
    study_uid         TEXT,
    state             TEXT NOT NULL DEFAULT 'new',
    record            TEXT NOT NULL DEFAULT '{}',
    content_hash      TEXT,
    report_version    INTEGER NOT NULL DEFAULT 0,
    quarantine_reason TEXT,
    exam_time         TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    UNIQUE (hospital_id, accession_no)
);
CREATE INDEX exams_study ON exams (study_uid);
CREATE INDEX exams_state ON exams (state);

CREATE TABLE exam_versions (
    id           INTEGER PRIMARY KEY,
    exam_id      INTEGER NOT NULL REFERENCES exams (id),
    version      INTEGER NOT NULL,
    source_type  TEXT,
    content_hash TEXT NOT NULL,
    record       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    UNIQUE (exam_id, version)
);

CREATE TABLE studies (
    study_uid      TEXT PRIMARY KEY,
    exam_id        INTEGER REFERENCES exams (id),
    accession_no   TEXT,
    state          TEXT NOT NULL DEFAULT 'new',
    expected_count INTEGER,
    detail         TEXT,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
);

CREATE TABLE instances (
    sop_uid         TEXT PRIMARY KEY,
    study_uid       TEXT NOT NULL,
    series_uid      TEXT,
    sop_class_uid   TEXT,
    transfer_syntax TEXT,
    path            TEXT,
    size            INTEGER,
    sha256          TEXT,
    state           TEXT NOT NULL DEFAULT 'received',
    error           TEXT,
    source          TEXT,
    received_at     REAL NOT NULL,
    updated_at      REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX instances_study ON instances (study_uid);
CREATE INDEX instances_state ON instances (state);

CREATE TABLE watermarks (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE job_runs (
    name        TEXT PRIMARY KEY,
    started_at  REAL,
    finished_at REAL,
    outcome     TEXT,
    detail      TEXT,
    runs        INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE kv (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE doctor_sessions (
    id          INTEGER PRIMARY KEY,
    his_user_id TEXT NOT NULL,
    hospital_id TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    detail      TEXT NOT NULL DEFAULT '{}',
    id_hash     TEXT,
    opened_at   REAL NOT NULL,
    closed_at   REAL,
    expires_at  REAL
);
CREATE INDEX doctor_sessions_user ON doctor_sessions (hospital_id, his_user_id, state);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    outcome TEXT,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""),
]
