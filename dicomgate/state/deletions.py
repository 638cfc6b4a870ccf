"""Image deletions from the PACS (spec 4.5): what we hold for an exam, marking it deleted,
and the deletion record the upstream `deletion` task reads (it holds the personal data that
task payloads must not)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .db import Database


@dataclass(frozen=True)
class Holdings:
    exam_id: int | None
    study_uids: list[str]
    instances: list[dict[str, Any]]  # sop_uid, study_uid, series_uid, path (not yet deleted)


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

    def find(self, hospital_id: str, accession_no: str, operate_time: str,
             conn: sqlite3.Connection | None = None) -> Deletion | None:
        row = (conn or self.db.conn()).execute(
            "SELECT * FROM deletions WHERE hospital_id=? AND accession_no=? AND operate_time=?",
            (hospital_id, accession_no, operate_time)).fetchone()
        return Deletion.from_row(row) if row else None

    def get(self, deletion_id: int) -> Deletion | None:
        row = self.db.one("SELECT * FROM deletions WHERE id=?", (deletion_id,))
        return Deletion.from_row(row) if row else None

    def list(self, limit: int = 100) -> list[Deletion]:
        rows = self.db.query("SELECT * FROM deletions ORDER BY id DESC LIMIT ?", (limit,))
        return [Deletion.from_row(r) for r in rows]

    def holdings(self, conn: sqlite3.Connection, hospital_id: str, accession_no: str,
                 unlinked_hospital: str | None = None) -> Holdings:
        """The exam's studies (by exam link, exam study UID, or accession number within the
        same hospital) and their instances not yet marked deleted. Accession numbers are
        unique only within a hospital: a study matched by accession alone must belong to an
        exam of `hospital_id`, or have no exam and `hospital_id` be `unlinked_hospital` (the
        gateway's own code: studies received without a report are ours)."""
        exam = conn.execute("SELECT id, study_uid FROM exams WHERE hospital_id=? AND "
                            "accession_no=?", (hospital_id, accession_no)).fetchone()
        exam_id = int(exam["id"]) if exam else None
        rows = conn.execute(
            "SELECT study_uid FROM studies WHERE (exam_id IS NOT NULL AND exam_id=?) "
            "OR study_uid=? OR (accession_no=? AND (exam_id IN (SELECT id FROM exams WHERE "
            "hospital_id=?) OR (exam_id IS NULL AND ?))) ORDER BY study_uid",
            (exam_id, exam["study_uid"] if exam else None, accession_no, hospital_id,
             int(hospital_id == unlinked_hospital))).fetchall()
        uids = [r["study_uid"] for r in rows]
        if exam and exam["study_uid"] and exam["study_uid"] not in uids:
            uids.append(exam["study_uid"])
        instances: list[dict[str, Any]] = []
        if uids:
            marks = ",".join("?" * len(uids))
            instances = [dict(r) for r in conn.execute(
                f"SELECT sop_uid, study_uid, series_uid, path FROM instances "
                f"WHERE study_uid IN ({marks}) AND state<>'deleted' ORDER BY sop_uid", uids)]
        return Holdings(exam_id, uids, instances)

    def mark_deleted(self, conn: sqlite3.Connection, holdings: Holdings) -> None:
        now = time.time()
        conn.executemany("UPDATE instances SET state='deleted', updated_at=? WHERE sop_uid=?",
                         [(now, i["sop_uid"]) for i in holdings.instances])
        # detail is a JSON object, as every other writer and reader of the column has it
        note = json.dumps({"note": "images deleted at the PACS; re-check queued",
                           "deleted_at": now})
        conn.executemany("UPDATE studies SET state='deleted', detail=?, updated_at=? "
                         "WHERE study_uid=?", [(note, now, uid) for uid in holdings.study_uids])

    def record(self, conn: sqlite3.Connection, *, hospital_id: str, accession_no: str,
               operate_time: str, patient_name: str, operator_name: str,
               holdings: Holdings, client: str) -> int:
        now = time.time()
        cur = conn.execute(
            "INSERT INTO deletions (hospital_id, accession_no, operate_time, patient_name, "
            "operator_name, exam_id, study_uids, sop_uids, client, created_at, last_request_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hospital_id, accession_no, operate_time, patient_name, operator_name,
             holdings.exam_id, json.dumps(holdings.study_uids),
             json.dumps([i["sop_uid"] for i in holdings.instances]), client, now, now))
        return int(cur.lastrowid)

    def repeated(self, conn: sqlite3.Connection, deletion_id: int) -> None:
        conn.execute("UPDATE deletions SET requests=requests+1, last_request_at=? WHERE id=?",
                     (time.time(), deletion_id))

    def still_deleted(self, sop_uids: list[str]) -> list[dict[str, Any]]:
        """Instances of a past deletion still marked deleted (not re-retrieved since)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(sop_uids), 500):
            chunk = sop_uids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += [dict(r) for r in self.db.query(
                f"SELECT sop_uid, study_uid, series_uid, path FROM instances "
                f"WHERE sop_uid IN ({marks}) AND state='deleted'", tuple(chunk))]
        return out

    def files_removed(self, deletion_id: int, count: int) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE deletions SET files_removed=files_removed+? WHERE id=?",
                      (count, deletion_id))

    def known_studies(self, study_uids: list[str]) -> set[str]:
        """Which of these studies this gateway holds itself (used to drop our own studies
        from cross-hospital lookups)."""
        out: set[str] = set()
        for i in range(0, len(study_uids), 500):
            chunk = study_uids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out |= {r[0] for r in self.db.query(
                f"SELECT study_uid FROM studies WHERE study_uid IN ({marks})", tuple(chunk))}
        return out
