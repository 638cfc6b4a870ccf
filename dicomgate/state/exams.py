"""Exams, their report versions and unkeyable rejected rows (owner: dicomgate.reports).

Writes take the caller's connection so that an exam, its version and the tasks it
causes commit together (see `batch()`).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .db import Database
from .names import ExamState, member

EXAM_STATES = tuple(ExamState)
# Parameters per look-up of many keys: under SQLite's oldest limit (999) and PostgreSQL's.
CHUNK = 900


@dataclass(frozen=True)
class Exam:
    id: int
    hospital_id: str
    accession_no: str
    study_uid: str | None
    state: ExamState
    record: dict[str, Any]
    content_hash: str | None
    report_version: int
    report_hash: str | None
    quarantine_reason: str | None
    warnings: list[str]
    exam_time: str | None
    last_type: int | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Exam:
        d = dict(row)
        d["state"] = ExamState(d["state"])
        d["record"] = json.loads(d["record"] or "{}")
        d["warnings"] = json.loads(d["warnings"] or "[]")
        return cls(**d)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class ExamStore:
    def __init__(self, db: Database):
        self.db = db

    # -- writes (a batch of rows and the tasks they cause: inside store.transaction()) ----
    def insert(self, *, hospital_id: str, accession_no: str, state: ExamState | None = None,
               **values: Any) -> int:
        now = time.time()
        cols = self._columns(values, state)
        with self.db.tx() as conn:
            cur = conn.execute(
                f"INSERT INTO exams (hospital_id, accession_no, created_at, updated_at"
                f"{''.join(', ' + c for c in cols)}) VALUES (?, ?, ?, ?{', ?' * len(cols)})",
                (hospital_id, accession_no, now, now, *cols.values()))
        return int(cur.lastrowid)

    def update(self, exam_id: int, *, state: ExamState | None = None, **values: Any) -> None:
        cols = self._columns(values, state)
        sets = "".join(f"{c}=?, " for c in cols)
        with self.db.tx() as conn:
            conn.execute(f"UPDATE exams SET {sets}updated_at=? WHERE id=?",
                         (*cols.values(), time.time(), exam_id))

    @staticmethod
    def _columns(values: dict[str, Any], state: ExamState | None) -> dict[str, Any]:
        allowed = {"study_uid", "record", "content_hash", "report_version",
                   "report_hash", "quarantine_reason", "warnings", "exam_time", "last_type"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not exam columns: {sorted(unknown)}")
        if state is not None:
            values = {**values, "state": member(ExamState, state).value}
        return {k: dumps(v) if k in ("record", "warnings") else v for k, v in values.items()}

    def add_version(self, exam_id: int, version: int, source_type: int, content_hash: str,
                    record: dict[str, Any]) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT INTO exam_versions (exam_id, version, source_type, "
                         "content_hash, record, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (exam_id, version, str(source_type), content_hash, dumps(record),
                          time.time()))

    def task_keys(self, exam_id: int, kind: str) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT key FROM tasks WHERE exam_id=? AND kind=? ORDER BY id", (exam_id, kind))]

    def active_task_ids(self, exam_id: int, study_uid: str | None,
                        kinds: tuple[str, ...]) -> list[int]:
        marks = ",".join("?" * len(kinds))
        sql = (f"SELECT id FROM tasks WHERE state IN ('pending','running') AND kind IN "
               f"({marks}) AND (exam_id=? OR (CAST(? AS TEXT) IS NOT NULL AND study_uid=?)) "
               "ORDER BY id")
        return [r[0] for r in self.db.query(sql, (*kinds, exam_id, study_uid, study_uid))]

    def warn_for_study(self, study_uid: str, text: str) -> None:
        """Add a warning to the exam(s) of a study (found by the exam's study UID or the
        study's exam), once."""
        with self.db.tx() as c:
            rows = c.execute("SELECT id, warnings FROM exams WHERE study_uid=? OR id IN "
                             "(SELECT exam_id FROM studies WHERE study_uid=? AND exam_id IS "
                             "NOT NULL)", (study_uid, study_uid)).fetchall()
            for row in rows:
                warnings = json.loads(row["warnings"] or "[]")
                if text not in warnings:
                    c.execute("UPDATE exams SET warnings=?, updated_at=? WHERE id=?",
                              (dumps([*warnings, text]), time.time(), row["id"]))

    def set_reported(self, exam_id: int) -> None:
        """The cloud holds the report; a withdrawn or deleted exam keeps its state."""
        with self.db.tx() as c:
            c.execute("UPDATE exams SET state='reported', updated_at=? WHERE id=? "
                      "AND state IN ('new', 'synced', 'reported')", (time.time(), exam_id))

    def reject(self, *, hospital_id: str, event_type: int | None, content_hash: str,
               record: dict[str, Any], reason: str) -> bool:
        """Keep a row that has no key; True when it is seen for the first time."""
        now = time.time()
        with self.db.tx() as conn:
            cur = conn.execute(
                "INSERT INTO exam_rejects (hospital_id, event_type, content_hash, record, "
                "reason, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                "(content_hash) DO UPDATE SET last_seen=excluded.last_seen, "
                "seen=exam_rejects.seen+1 "
                "RETURNING seen",
                (hospital_id, event_type, content_hash, dumps(record), reason, now, now))
            return cur.fetchone()[0] == 1

    # -- reads ---------------------------------------------------------------------------
    def get(self, hospital_id: str, accession_no: str) -> Exam | None:
        row = self.db.one("SELECT * FROM exams WHERE hospital_id=? AND accession_no=?",
                          (hospital_id, accession_no))
        return Exam.from_row(row) if row else None

    def by_keys(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Exam]:
        """The stored exams of many (hospital_id, accession_no) keys, a few statements for
        a whole batch (one per hospital and CHUNK keys): a key with no exam is absent."""
        by_hospital: dict[str, set[str]] = {}
        for hid, acc in keys:
            by_hospital.setdefault(hid, set()).add(acc)
        out: dict[tuple[str, str], Exam] = {}
        for hid, accs in by_hospital.items():
            for part in _chunks(sorted(accs), CHUNK - 1):
                rows = self.db.query(
                    "SELECT * FROM exams WHERE hospital_id=? AND accession_no IN "
                    f"({','.join('?' * len(part))})", (hid, *part))
                for r in rows:
                    exam = Exam.from_row(r)
                    out[(exam.hospital_id, exam.accession_no)] = exam
        return out

    def task_kinds(self, exam_ids: Iterable[int]) -> dict[int, set[str]]:
        """The kinds of task (any state) each of many exams has, one statement per CHUNK
        exams: an exam with none is absent."""
        out: dict[int, set[str]] = {}
        for part in _chunks(sorted(set(exam_ids)), CHUNK):
            rows = self.db.query("SELECT DISTINCT exam_id, kind FROM tasks WHERE exam_id IN "
                                 f"({','.join('?' * len(part))})", tuple(part))
            for r in rows:
                out.setdefault(int(r[0]), set()).add(r[1])
        return out

    def by_accession(self, accession_no: str) -> list[Exam]:
        rows = self.db.query("SELECT * FROM exams WHERE accession_no=? ORDER BY hospital_id",
                             (accession_no,))
        return [Exam.from_row(r) for r in rows]

    def get_by_id(self, exam_id: int) -> Exam | None:
        row = self.db.one("SELECT * FROM exams WHERE id=?", (exam_id,))
        return Exam.from_row(row) if row else None

    def list(self, state: ExamState | None = None, since: float | None = None,
             limit: int = 1000) -> list[Exam]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state=?")
            params.append(member(ExamState, state).value)
        if since is not None:
            where.append("updated_at>=?")
            params.append(since)
        sql = "SELECT * FROM exams" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.query(sql + " ORDER BY updated_at DESC, id DESC LIMIT ?",
                             (*params, limit))
        return [Exam.from_row(r) for r in rows]

    def versions(self, exam_id: int) -> builtins.list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM exam_versions WHERE exam_id=? ORDER BY version",
                             (exam_id,))
        return [{**dict(r), "record": json.loads(r["record"])} for r in rows]

    def version(self, exam_id: int, version: int) -> dict[str, Any] | None:
        r = self.db.one("SELECT * FROM exam_versions WHERE exam_id=? AND version=?",
                        (exam_id, version))
        return {**dict(r), "record": json.loads(r["record"])} if r else None

    def rejects(self, since: float | None = None,
                limit: int = 1000) -> builtins.list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM exam_rejects WHERE last_seen>=? "
                             "ORDER BY last_seen DESC LIMIT ?", (since or 0.0, limit))
        return [{**dict(r), "record": json.loads(r["record"])} for r in rows]

    def counts(self) -> dict[str, int]:
        out = {r["state"]: r["n"] for r in
               self.db.query("SELECT state, COUNT(*) n FROM exams GROUP BY state")}
        rejects = self.db.one("SELECT COUNT(*) FROM exam_rejects")[0]
        if rejects:
            out["rejected (no accessionNo)"] = rejects
        return out


def _chunks(items: builtins.list[Any], size: int) -> Iterable[builtins.list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
