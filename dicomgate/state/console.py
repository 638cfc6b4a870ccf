"""Read-only queries for the operator console: exams with their pipeline, problems,
audit search. Each answers one page poll with a few indexed queries; nothing here writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from .db import Database
from .exams import Exam
from .kinds import PushReport
from .names import ExamState, TaskState, member
from .tasks import Task

# What an exam needs from the other tables to say where it stands in the pipeline.
_STUDIES = ("SELECT exam_id, study_uid, expected_count, state, detail FROM studies "
            "WHERE exam_id IN ({ids}) OR study_uid IN ({uids})")
_INSTANCES = ("SELECT study_uid, COUNT(*) received, "
              "SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END) delivered, "
              "SUM(CASE WHEN state='rejected' THEN 1 ELSE 0 END) rejected, "
              "COALESCE(SUM(size), 0) bytes FROM instances "
              "WHERE state<>'deleted' AND study_uid IN ({uids}) GROUP BY study_uid")
_TASKS = "SELECT * FROM tasks WHERE exam_id IN ({ids}) OR study_uid IN ({uids})"


def _marks(items: list) -> str:
    return ",".join("?" * len(items)) or "NULL"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ConsoleStore:
    def __init__(self, db: Database):
        self.db = db

    # -- exams ----------------------------------------------------------------------------
    def search_exams(self, accession: str | None = None, day_from: str | None = None,
                     day_to: str | None = None, states: Iterable[ExamState] | None = None,
                     changed_since: float | None = None, limit: int = 200) -> list[Exam]:
        """Exams by accession number (substring), exam day range ('YYYY-MM-DD', inclusive),
        stored state, or (OR'ed with the day range) first read at/after `changed_since`."""
        where: list[str] = []
        params: list[Any] = []
        if accession:
            where.append("accession_no LIKE ? ESCAPE '\\'")
            params.append(_like(accession.strip()))
        day = []
        if day_from:
            day.append("exam_time >= ?")
            params.append(day_from)
        if day_to:
            day.append("exam_time < ?")
            params.append(day_to + "~")  # '~' sorts after any time of that day
        if day and changed_since is not None:
            where.append(f"(({' AND '.join(day)}) OR created_at >= ?)")
            params.append(changed_since)
        elif day:
            where.extend(day)
        wanted = [member(ExamState, s).value for s in states or ()]
        if wanted:
            where.append(f"state IN ({_marks(wanted)})")
            params.extend(wanted)
        sql = "SELECT * FROM exams" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.query(sql + " ORDER BY COALESCE(exam_time, '') DESC, id DESC LIMIT ?",
                             (*params, limit))
        return [Exam.from_row(r) for r in rows]

    def pipelines(self, exams: list[Exam]) -> dict[int, dict[str, Any]]:
        """Per exam id: studies, images expected/received/delivered/rejected, the newest
        report version pushed, task counts by state, dead task ids."""
        if not exams:
            return {}
        ids = [e.id for e in exams]
        uids = sorted({e.study_uid for e in exams if e.study_uid})
        conn = self.db.conn()
        studies = conn.execute(_STUDIES.format(ids=_marks(ids), uids=_marks(uids)),
                               (*ids, *uids)).fetchall()
        by_uid = {e.study_uid: e.id for e in exams if e.study_uid}
        of_exam: dict[int, list[sqlite3.Row]] = {i: [] for i in ids}
        for s in studies:
            owner = s["exam_id"] if s["exam_id"] in of_exam else by_uid.get(s["study_uid"])
            if owner is not None:
                of_exam[owner].append(s)
        all_uids = sorted({s["study_uid"] for s in studies} | set(uids))
        counts = {r["study_uid"]: r for r in conn.execute(
            _INSTANCES.format(uids=_marks(all_uids)), all_uids).fetchall()}
        tasks_of: dict[tuple[str, object], list[Task]] = {}
        for row in conn.execute(_TASKS.format(ids=_marks(ids), uids=_marks(all_uids)),
                                (*ids, *all_uids)):
            t = Task.from_row(row)  # the payload read as its kind, as workers read it
            tasks_of.setdefault(("exam", t.exam_id), []).append(t)
            tasks_of.setdefault(("study", t.study_uid), []).append(t)
        out = {}
        for e in exams:
            study_rows = of_exam[e.id]
            mine = {s["study_uid"] for s in study_rows} | ({e.study_uid} if e.study_uid else set())
            expected = [s["expected_count"] for s in study_rows if s["expected_count"] is not None]
            got = [counts[u] for u in mine if u in counts]
            own = {t.id: t for t in tasks_of.get(("exam", e.id), [])}
            for uid in mine:
                own.update((t.id, t) for t in tasks_of.get(("study", uid), []))
            own_tasks = list(own.values())
            out[e.id] = {
                "studies": sorted(mine),
                "study_states": sorted({s["state"] for s in study_rows}),
                "expected": sum(expected) if expected else None,
                "received": sum(r["received"] for r in got),
                "delivered": sum(r["delivered"] or 0 for r in got),
                "rejected": sum(r["rejected"] or 0 for r in got),
                "bytes": sum(r["bytes"] for r in got),
                "pushed_version": max((t.work.version for t in own_tasks
                                       if isinstance(t.work, PushReport)
                                       and t.state is TaskState.DONE), default=0),
                "tasks": _count(t.state.value for t in own_tasks),
                "dead_tasks": sorted(t.id for t in own_tasks if t.state is TaskState.DEAD),
            }
        return out

    def exam_instances(self, study_uids: list[str], limit: int = 2000) -> list[dict[str, Any]]:
        if not study_uids:
            return []
        rows = self.db.query(
            f"SELECT i.sop_uid, i.study_uid, i.series_uid, i.sop_class_uid, i.transfer_syntax, "
            f"i.size, i.state, i.error, i.received_at, i.delivered_at, u.attempts, "
            f"u.last_status FROM instances i LEFT JOIN instance_uploads u "
            f"ON u.sop_uid=i.sop_uid WHERE i.study_uid IN ({_marks(study_uids)}) "
            f"ORDER BY i.study_uid, i.series_uid, i.sop_uid LIMIT ?", (*study_uids, limit))
        return [dict(r) for r in rows]

    def studies(self, study_uids: list[str]) -> list[dict[str, Any]]:
        if not study_uids:
            return []
        rows = self.db.query(f"SELECT * FROM studies WHERE study_uid IN ({_marks(study_uids)}) "
                             "ORDER BY created_at", tuple(study_uids))
        return [dict(r) | {"detail": _json(r["detail"])} for r in rows]

    def sends(self, keys: list[str], limit: int = 50) -> list[dict[str, Any]]:
        """The cloud's answers to REST sends with these task keys, newest first."""
        if not keys:
            return []
        rows = self.db.query(f"SELECT * FROM upstream_sends WHERE key IN ({_marks(keys)}) "
                             "ORDER BY id DESC LIMIT ?", (*keys, limit))
        return [dict(r) for r in rows]

    # -- overview -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """The problem counters of the overview, in one round trip."""
        row = self.db.one(
            "SELECT (SELECT COUNT(*) FROM tasks WHERE state='dead') dead_tasks, "
            "(SELECT COUNT(*) FROM exams WHERE state='quarantined') quarantined_exams, "
            "(SELECT COUNT(*) FROM exam_rejects) rejected_rows, "
            "(SELECT COUNT(*) FROM instances WHERE state='rejected') rejected_instances")
        return dict(row)

    def job(self, name: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM job_runs WHERE name=?", (name,))
        return dict(row) if row else None

    # -- problems -------------------------------------------------------------------------
    def dead_tasks(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT t.id, t.kind, t.key, t.attempts, t.last_error, t.exam_id, t.study_uid, "
            "t.created_at, t.finished_at, t.updated_at, e.accession_no, e.hospital_id "
            "FROM tasks t LEFT JOIN exams e ON e.id = t.exam_id WHERE t.state='dead' "
            "ORDER BY t.updated_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def quarantined_exams(self, limit: int = 200) -> list[Exam]:
        rows = self.db.query("SELECT * FROM exams WHERE state='quarantined' "
                             "ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [Exam.from_row(r) for r in rows]

    def rejected_instances(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT study_uid, COUNT(*) n, MAX(updated_at) at, MIN(error) error FROM instances "
            "WHERE state='rejected' GROUP BY study_uid ORDER BY at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    # -- audit ----------------------------------------------------------------------------
    def audit(self, actions: Iterable[str] = (), text: str | None = None,
              since: float | None = None, until: float | None = None,
              limit: int = 200) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        actions = list(actions)
        if actions:
            where.append(f"action IN ({_marks(actions)})")
            params.extend(actions)
        if text:
            where.append("(actor LIKE ? ESCAPE '\\' OR subject LIKE ? ESCAPE '\\' "
                         "OR detail LIKE ? ESCAPE '\\')")
            params.extend([_like(text)] * 3)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if until is not None:
            where.append("at < ?")
            params.append(until)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [dict(r) | {"detail": _json(r["detail"]) or {}} for r in rows]

    def audit_actions(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT DISTINCT action FROM audit ORDER BY action")]


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
