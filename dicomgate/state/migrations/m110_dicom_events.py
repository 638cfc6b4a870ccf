"""Images: what the Portal AET refused and which C-MOVE sub-operations failed.

One row per event, so `study show` and the retrieve's error messages can say what
dicomgate itself saw (an association or presentation context it rejected, a C-STORE it
refused, an instance the PACS reported as a failed sub-operation) instead of guessing.
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (110, "dicom_events", """
CREATE TABLE dicom_events (
    id                INTEGER PRIMARY KEY,
    at                REAL NOT NULL,
    kind              TEXT NOT NULL,
    calling_aet       TEXT,
    peer              TEXT,
    sop_class_uid     TEXT,
    transfer_syntaxes TEXT,
    sop_uid           TEXT,
    study_uid         TEXT,
    status            TEXT,
    reason            TEXT NOT NULL
);
CREATE INDEX dicom_events_at ON dicom_events (at);
CREATE INDEX dicom_events_study ON dicom_events (study_uid);
"""),
]
