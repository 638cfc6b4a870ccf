"""The console's read-only JSON: what each page shows, built from the state store.

Personal data is masked the way `dicomgate exams show` masks it (privacy.mask_mapping for
records, mask_text for free text such as errors and quarantine reasons); there is no reveal.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..app import App
from ..buildinfo import build_info
from ..nodes import nodes_view
from ..privacy import mask_mapping, mask_text, mask_value
from ..state.exams import Exam
from ..state.kinds import Deletion, PushReport, Retrieve, Upload, Withdraw
from ..state.names import ExamState, Fact

ECHO_FACT = Fact.PACS_ECHO
REACH_FACT = Fact.UPSTREAM_REACHABILITY
POLL_JOB = "reports.poll"

# Where an exam stands, worst first: the page colours and filters by these.
STAGES = ("problem", "quarantined", "waiting_images", "waiting_report", "sending", "delivered",
          "withdrawn", "deleted")


class Views:
    def __init__(self, app: App):
        self.app = app
        self.cfg = app.config
        self.store = app.store
        self.tz = app.config.gateway.timezone

    # -- overview -------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        now = time.time()
        today = dt.datetime.now(self.tz).date()
        midnight = dt.datetime.combine(today, dt.time(), self.tz).timestamp()
        exams = self.store.console.search_exams(day_from=today.isoformat(),
                                                day_to=today.isoformat(),
                                                changed_since=midnight, limit=5000)
        pipes = self.store.console.pipelines(exams)
        stages = {e.id: stage(e, pipes[e.id]) for e in exams}
        by_stage: dict[str, int] = {}
        for s in stages.values():
            by_stage[s] = by_stage.get(s, 0) + 1
        # what needs a person first, then what is still moving, newest first within each
        exams = sorted(exams, key=lambda e: STAGES.index(stages[e.id]))
        backlog = self.store.delivery.backlog()
        counts = self.store.console.counts()
        checks = self.app.health()
        return {
            "now": now, "version": __version__, "build": build_info(),
            "hospital_id": self.cfg.gateway.hospital_id,
            "peers": self.peers(now, checks),
            "backlog": {k: backlog[k] for k in ("backlog_instances", "backlog_bytes",
                                                "backlog_studies", "oldest_age_seconds",
                                                "spool_instances", "spool_bytes")},
            "today": {"date": today.isoformat(), "total": len(exams), "by_stage": by_stage,
                      "exams": self._rows(exams[:50], pipes)},
            "problems": {**counts, "quarantined_files": self.quarantined_file_count()},
            "disk": self.disk(),
            "health": {"status": "ok" if not any(checks.values()) else "unhealthy",
                       "checks": {k: v or "ok" for k, v in checks.items()},
                       "workers": self.workers(), "nodes": self.nodes()},
        }

    def nodes(self) -> list[dict[str, Any]] | None:
        """Nodes sharing a PostgreSQL store (None on one SQLite host)."""
        if self.app.node is None:
            return None
        return nodes_view(self.cfg, self.store, True)

    def workers(self) -> dict[str, Any]:
        """The worker threads: alive of started, busy, and each lane's state."""
        pool = self.app.pool
        alive, started = pool.alive()
        return {"alive": alive, "started": started, "busy": pool.busy(),
                "lanes": pool.lanes_status()}

    def peers(self, now: float, checks: dict[str, str | None] | None = None
              ) -> list[dict[str, Any]]:
        out = []
        if self.cfg.pacs is not None:
            echo = self.store.facts.get(ECHO_FACT) or {}
            out.append({"name": "pacs", "target": echo.get("pacs") or
                        f"{self.cfg.pacs.ae_title}@{self.cfg.pacs.host}:{self.cfg.pacs.port}",
                        "ok": echo.get("ok"), "at": echo.get("at"), "since": echo.get("since"),
                        "detail": echo.get("error") or (
                            f"C-ECHO {echo['latency_ms']} ms" if echo.get("ok") else None)})
        if self.cfg.reports is not None:
            job = self.store.console.job(POLL_JOB) or {}
            r = self.cfg.reports
            target = (r.view.name if r.source == "view" and r.view else
                      r.http.url if r.http else r.source)
            # The reports feature's own health check says what keeps rows from being read
            # (view check, failed poll types); a poll in progress is not a failure.
            problem = (checks or {}).get("reports")
            if "reports" not in (checks or {}):
                problem = job.get("detail") if job.get("outcome") == "error" else None
            ok = None if not job.get("finished_at") else problem is None
            out.append({"name": "reports", "target": f"{r.source}: {target}", "ok": ok,
                        "at": job.get("finished_at"), "since": None,
                        "detail": mask_text(problem or job.get("detail") or "") or None})
        if self.cfg.upstream is not None:
            reach = self.store.facts.get(REACH_FACT) or {}
            for target, url in (("dicomweb", self.cfg.upstream.dicomweb_url),
                                ("api", self.cfg.upstream.api_url)):
                seen = reach.get(target) or {}
                out.append({"name": f"cloud_{target}", "target": url,
                            "ok": seen.get("reachable"), "at": seen.get("at"), "since": None,
                            "detail": seen.get("error")})
        return out

    def disk(self) -> dict[str, Any]:
        usage = shutil.disk_usage(self.cfg.gateway.state_dir)
        floor = self.cfg.dicom.min_free_disk
        return {"free_bytes": usage.free, "total_bytes": usage.total, "floor_bytes": floor,
                "below_floor": usage.free < floor}

    # -- exams ----------------------------------------------------------------------------
    def exams(self, accession: str | None, day_from: str | None, day_to: str | None,
              wanted: str | None, limit: int = 200) -> dict[str, Any]:
        """Exams found, newest first; `wanted` keeps one stage (computed, so up to 5,000
        candidates are looked at)."""
        candidates = self.store.console.search_exams(accession, day_from, day_to,
                                                     limit=limit if not wanted else 5000)
        pipes = self.store.console.pipelines(candidates)
        if wanted:
            candidates = [e for e in candidates if stage(e, pipes[e.id]) == wanted]
        return {"exams": self._rows(candidates[:limit], pipes),
                "truncated": len(candidates) > limit, "stages": STAGES}

    def exam(self, exam_id: int) -> dict[str, Any] | None:
        exam = self.store.exams.get_by_id(exam_id)
        if exam is None:
            return None
        row = self._rows([exam])[0]
        pipe = self.store.console.pipelines([exam])[exam.id]
        tasks = {t.id: t for t in self.store.tasks.list(exam_id=exam.id)}
        for uid in pipe["studies"]:
            tasks.update({t.id: t for t in self.store.tasks.list(study_uid=uid)})
        task_rows = [_task(tasks[i]) for i in sorted(tasks)]
        return {
            **row, "record": mask_mapping(exam.record), "warnings": exam.warnings,
            "created_at": exam.created_at, "updated_at": exam.updated_at,
            "versions": [{"version": v["version"], "source_type": v["source_type"],
                          "created_at": v["created_at"], "hash": v["content_hash"][:12],
                          "record": mask_mapping(v["record"])}
                         for v in self.store.exams.versions(exam.id)],
            "tasks": task_rows,
            "sends": [{**s, "message": mask_text(s["message"] or "")} for s in
                      self.store.console.sends([t["key"] for t in task_rows])],
            "studies": self.store.console.studies(pipe["studies"]),
            "instances": [{**i, "error": mask_text(i["error"]) if i["error"] else None}
                          for i in self.store.console.exam_instances(pipe["studies"])],
        }

    def _rows(self, exams: list[Exam], pipes: dict[int, dict[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
        pipes = pipes if pipes is not None else self.store.console.pipelines(exams)
        qr = self.store.qr.of([(e.hospital_id, e.accession_no) for e in exams])
        return [_row(e, pipes[e.id], qr.get((e.hospital_id, e.accession_no))) for e in exams]

    # -- problems -------------------------------------------------------------------------
    def problems(self) -> dict[str, Any]:
        c = self.store.console
        return {
            "dead_tasks": [{**t, "last_error": mask_text(t["last_error"] or ""),
                            "advice": advice(t["kind"])}
                           for t in c.dead_tasks()],
            "quarantined_exams": [{"id": e.id, "hospital_id": e.hospital_id,
                                   "accession_no": e.accession_no, "exam_time": e.exam_time,
                                   "modality": e.record.get("modality"),
                                   "reason": mask_text(e.quarantine_reason or ""),
                                   "updated_at": e.updated_at}
                                  for e in c.quarantined_exams()],
            "rejected_rows": [{"id": r["id"], "hospital_id": r["hospital_id"],
                               "event_type": r["event_type"], "reason": mask_text(r["reason"]),
                               "seen": r["seen"], "first_seen": r["first_seen"],
                               "last_seen": r["last_seen"],
                               "exam_time": r["record"].get("examTime"),
                               "modality": r["record"].get("modality")}
                              for r in self.store.exams.rejects(limit=200)],
            "rejected_instances": [{**r, "error": mask_text(r["error"] or "")}
                                   for r in c.rejected_instances()],
            "quarantined_files": self.quarantined_files(),
            # instances delivered as received but suspect (e.g. Pixel Data truncated)
            "suspect_instances": [
                {"at": e.at, "study_uid": e.study_uid, "sop_uid": e.sop_uid,
                 "reason": e.reason}
                for e in self.store.dicom_events.since(time.time() - 30 * 86400,
                                                       ("instance_suspect",))[-200:]],
        }

    def quarantined_file_count(self) -> int:
        qdir = self.cfg.gateway.quarantine_dir
        return sum(1 for _ in qdir.glob("*.json")) if qdir.is_dir() else 0

    def quarantined_files(self, limit: int = 200) -> list[dict[str, Any]]:
        """The notes images.spool writes beside each quarantined file, newest first."""
        qdir = self.cfg.gateway.quarantine_dir
        if not qdir.is_dir():
            return []
        notes = sorted(qdir.glob("*.json"), reverse=True)[:limit]
        return [_note(p) for p in notes]

    # -- audit ----------------------------------------------------------------------------
    def audit(self, action: str | None, text: str | None, day_from: str | None,
              day_to: str | None) -> dict[str, Any]:
        since = self._day_start(day_from)
        until = self._day_start(day_to, plus_days=1)
        rows = self.store.console.audit([action] if action else (), text, since, until)
        return {"entries": [{**r, "subject": mask_text(r["subject"] or ""),
                             "detail": mask_mapping(r["detail"]) if isinstance(
                                 r["detail"], dict) else r["detail"]} for r in rows],
                "actions": self.store.console.audit_actions()}

    def _day_start(self, day: str | None, plus_days: int = 0) -> float | None:
        if not day:
            return None
        d = dt.date.fromisoformat(day) + dt.timedelta(days=plus_days)
        return dt.datetime.combine(d, dt.time(), self.tz).timestamp()


def _row(e: Exam, p: dict[str, Any], qr: dict[str, Any] | None) -> dict[str, Any]:
    rec = {k: mask_value(k, e.record.get(k)) if e.record.get(k) is not None else None
           for k in ("modality", "examItemName", "patientName")}
    return {
        "id": e.id, "hospital_id": e.hospital_id, "accession_no": e.accession_no,
        "state": e.state, "stage": stage(e, p), "exam_time": e.exam_time,
        "modality": rec.get("modality"), "item": rec.get("examItemName"),
        "patient": rec.get("patientName"), "study_uid": e.study_uid,
        "report_version": e.report_version, "pushed_version": p["pushed_version"],
        "expected": p["expected"], "received": p["received"], "delivered": p["delivered"],
        "rejected": p["rejected"], "bytes": p["bytes"], "dead_tasks": p["dead_tasks"],
        "tasks": p["tasks"], "qr_issued": qr is not None,
        "qr_count": qr["count"] if qr else 0, "qr_last": qr["last_at"] if qr else None,
        "reason": mask_text(e.quarantine_reason) if e.quarantine_reason else None,
        "updated_at": e.updated_at,
    }


def stage(e: Exam, p: dict[str, Any]) -> str:
    """One word for where the exam stands (see STAGES)."""
    if e.state in (ExamState.WITHDRAWN, ExamState.DELETED):
        return e.state.value
    if e.state is ExamState.QUARANTINED:
        return "quarantined"
    if p["dead_tasks"] or p["rejected"]:
        return "problem"
    expected = p["expected"]
    images_done = expected is not None and p["received"] >= expected
    if not images_done:
        return "waiting_images"
    if p["delivered"] < max(expected, p["received"]):
        return "sending"
    if e.report_version == 0:
        return "waiting_report"
    if p["pushed_version"] < e.report_version:
        return "sending"
    return "delivered"


def _task(t) -> dict[str, Any]:
    return {"id": t.id, "kind": t.kind, "key": t.key, "state": t.state, "attempts": t.attempts,
            "max_attempts": t.max_attempts, "run_after": t.run_after,
            "last_error": mask_text(t.last_error) if t.last_error else None,
            "result": mask_text(t.result) if t.result else None,
            "created_at": t.created_at, "updated_at": t.updated_at,
            "finished_at": t.finished_at}


def _note(path: Path) -> dict[str, Any]:
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        note = {"reason": f"note unreadable: {exc}"}
    if not isinstance(note, dict):
        note = {"reason": str(note)}
    dcm = path.with_suffix(".dcm")
    return {"file": dcm.name, "size": dcm.stat().st_size if dcm.exists() else None,
            "reason": mask_text(str(note.pop("reason", ""))), "at": note.pop("at", None),
            "context": mask_mapping(note)}


ADVICE_KINDS = tuple(k.kind for k in (Retrieve, Upload, PushReport, Withdraw, Deletion))


def advice(kind: str) -> str:
    """The key of the page's advice text for a dead task of this kind."""
    return kind if kind in ADVICE_KINDS else "other"
