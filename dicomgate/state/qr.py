"""QR codes issued to the PACS (spec 4.3), one row per exam (owner: dicomgate.shim)."""

from __future__ import annotations

import time
from typing import Any

from .db import Database


class QrStore:
    def __init__(self, db: Database):
        self.db = db

    def issued(self, hospital_id: str, accession_no: str, modality: str) -> None:
        now = time.time()
        with self.db.tx() as c:
            c.execute("INSERT INTO qr_issued (hospital_id, accession_no, modality, first_at, "
                      "last_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hospital_id, accession_no) "
                      "DO UPDATE SET last_at=excluded.last_at, modality=excluded.modality, "
                      "count=qr_issued.count+1", (hospital_id, accession_no, modality, now, now))

    def of(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """{(hospital_id, accession_no): row} for the exams that had a code issued."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i:i + 400]
            where = " OR ".join(["(hospital_id=? AND accession_no=?)"] * len(chunk))
            params = tuple(v for k in chunk for v in k)
            for r in self.db.query(f"SELECT * FROM qr_issued WHERE {where}", params):
                out[(r["hospital_id"], r["accession_no"])] = dict(r)
        return out
