"""HTTP shim: QR codes issued per exam (the console shows whether a report got its code)."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (402, "qr issued", """
CREATE TABLE qr_issued (
    hospital_id  TEXT NOT NULL,
    accession_no TEXT NOT NULL,
    modality     TEXT,
    first_at     REAL NOT NULL,
    last_at      REAL NOT NULL,
    count        INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (hospital_id, accession_no)
);
"""),
]
