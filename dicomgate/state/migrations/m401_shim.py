"""HTTP shim: image deletions received from the PACS (spec 4.5)."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (401, "shim deletions", """
CREATE TABLE deletions (
    id              INTEGER PRIMARY KEY,
    hospital_id     TEXT NOT NULL,
    accession_no    TEXT NOT NULL,
    operate_time    TEXT NOT NULL,
    patient_name    TEXT,
    operator_name   TEXT,
    exam_id         INTEGER,
    study_uids      TEXT NOT NULL DEFAULT '[]',
    sop_uids        TEXT NOT NULL DEFAULT '[]',
    files_removed   INTEGER NOT NULL DEFAULT 0,
    requests        INTEGER NOT NULL DEFAULT 1,
    client          TEXT,
    created_at      REAL NOT NULL,
    last_request_at REAL NOT NULL,
    UNIQUE (hospital_id, accession_no, operate_time)
);
CREATE INDEX deletions_exam ON deletions (hospital_id, accession_no);
"""),
]
