"""Image deletions from the PACS (spec 4.5): the deletion record the upstream `deletion`
task reads (it holds the personal data that task payloads must not). What we hold for the
exam and marking it deleted are the images tables' business: instances.py."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from .db import Database
from .instances import Holdings


@dataclass(frozen=True)
class Deletion:
    id: int
    hospital_id: str
    accession_no: str
    operate_time: str
    patient_name: str | None
    operator_name: str | None
    exam_id: int | None
    study_uids: list[str]
    sop_uids: list[str]
    files_removed: int
    requests: int
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Deletion:
        d = {k: row[k] for k in cls.__dataclass_fields__}
        d["study_uids"] = json.loads(d["study_uids"])
        d["sop_uids"] = json.loads(d["sop_uids"])
        return cls(**d)


class DeletionStore:
    def __init__(self, db: Database):
        self.db = db

    def find(self, hospital_id: str, accession_no: str, operate_time: str) -> Deletion | None:
        row = self.db.one(
            "SELECT * FROM deletions WHERE hospital_id=? AND accession_no=? AND operate_time=?",
            (hospital_id, accession_no, operate_time))
        return Deletion.from_row(row) if row else None

    def get(self, deletion_id: int) -> Deletion | None:
        row = self.db.one("SELECT * FROM deletions WHERE id=?", (deletion_id,))
        return Deletion.from_row(row) if row else None

    def list(self, limit: int = 100) -> list[Deletion]:
        rows = self.db.query("SELECT * FROM deletions ORDER BY id DESC LIMIT ?", (limit,))
        return [Deletion.from_row(r) for r in rows]

    def record(self, *, hospital_id: str, accession_no: str, operate_time: str,
               patient_name: str, operator_name: str, holdings: Holdings, client: str) -> int:
        now = time.time()
        with self.db.tx() as conn:
            cur = conn.execute(
                "INSERT INTO deletions (hospital_id, accession_no, operate_time, patient_name, "
                "operator_name, exam_id, study_uids, sop_uids, client, created_at, "
                "last_request_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (hospital_id, accession_no, operate_time, patient_name, operator_name,
                 holdings.exam_id, json.dumps(holdings.study_uids),
                 json.dumps([i["sop_uid"] for i in holdings.instances]), client, now, now))
        return int(cur.lastrowid)

    def repeated(self, deletion_id: int) -> None:
        with self.db.tx() as conn:
            conn.execute("UPDATE deletions SET requests=requests+1, last_request_at=? "
                         "WHERE id=?", (time.time(), deletion_id))

    def files_removed(self, deletion_id: int, count: int) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE deletions SET files_removed=files_removed+? WHERE id=?",
                      (count, deletion_id))
