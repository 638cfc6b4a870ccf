"""Apply normalised PACS rows to the state store and enqueue the work each event causes.

One call per batch, in one transaction: exams, report versions and tasks commit
together. Everything here is idempotent, so re-reading the overlap changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from ..privacy import mask_text
from ..state import Store
from ..state.exams import Exam, dumps
from ..state.kinds import PushReport, Retrieve, Upload, Withdraw
from ..state.names import ExamState
from .duplicates import MARK, RULE
from .events import (
    AUDITED,
    MODIFIED,
    PERFORMED,
    REFUNDED,
    REPORT_FIELDS,
    EventType,
    implied_by,
)
from .record import Normalised, Rules, image_paths, normalise
from .source import Row

log = structlog.get_logger("dicomgate.reports")

# Work that a refund makes pointless: cancelled before the withdrawal is queued.
CANCEL_ON_REFUND = (Retrieve.kind, Upload.kind, PushReport.kind)
STICKY_STATES = (ExamState.WITHDRAWN, ExamState.DELETED)


@dataclass
class Counts:
    read: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    tasks: int = 0
    cancelled: int = 0
    duplicates: int = 0  # rows of an exam that another row of it outranked
    stale: int = 0  # rows older than what the exam already holds (not applied)

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Batch:
    """What one batch knows of the store, read once at its start and kept current by its
    own writes (the batch runs under the store's write lock): the exams of its rows and
    the kinds of task each has."""
    counts: Counts
    exams: dict[tuple[str, str], Exam]
    kinds: dict[int, set[str]]

    def keep(self, exam: Exam) -> Exam:
        self.exams[(exam.hospital_id, exam.accession_no)] = exam
        return exam

    def has_task(self, exam: Exam, kind: str) -> bool:
        return kind in self.kinds.get(exam.id, ())

    def tasked(self, exam: Exam, kind: str) -> None:
        self.kinds.setdefault(exam.id, set()).add(kind)


@dataclass
class Applier:
    store: Store
    rules: Rules
    settle_delay: float
    images_http: bool = False

    def apply(self, rows: Iterable[Row], events: list[EventType] | None) -> Counts:
        """Apply one batch. `events`: the types the rows were read for; None: implied.

        The batch's stored exams and their tasks are read in a few statements up front,
        so an unchanged row (same content hash) costs no statement of its own."""
        normalised = [(raw, normalise(raw, self.rules, events)) for raw in rows]
        with self.store.transaction():  # the batch's rows and the tasks they cause
            keys = [(n.record["hospitalId"], n.record["accessionNo"]) for _, n in normalised
                    if n.record.get("accessionNo")]
            exams = self.store.exams.by_keys(keys)
            b = _Batch(Counts(), exams,
                       self.store.exams.task_kinds(e.id for e in exams.values()))
            for raw, n in normalised:
                b.counts.read += 1
                self._row(raw, n, events, b)
        return b.counts

    # -- one row -------------------------------------------------------------------------
    def _row(self, raw: Row, n: Normalised, events: list[EventType] | None,
             b: _Batch) -> None:
        rec, counts = n.record, b.counts
        acc, hid = rec.get("accessionNo"), rec["hospitalId"]
        if not acc or any(p.field == "accessionNo" for p in n.problems):
            self._reject(n, events, counts)
            return
        if MARK in raw:  # several rows of this exam in the read: the choice is recorded
            dup = raw[MARK]
            counts.duplicates += dup["rows"] - 1
            n.warnings.append(f"accessionNo {acc}: {dup['rows']} rows in the PACS view for "
                              f"this exam; used row {dup['chosen']} ({RULE})")
            log.warning("reports.duplicate_rows", accession_no=acc, hospital_id=hid,
                        rows=dup["rows"], chosen=dup["chosen"])
        exam = b.exams.get((hid, acc))
        if exam is not None and n.ok and _older(rec, exam.record):
            counts.stale += 1  # e.g. a past window that shows an earlier duplicate
            log.info("reports.stale_row_skipped", accession_no=acc, hospital_id=hid)
            return
        merged = {**(exam.record if exam else {}), **rec}
        digest = content_hash(merged)
        if not n.ok:
            self._quarantine(exam, n, merged, digest, events, b)
            return
        values = dict(record=merged, content_hash=digest, quarantine_reason=None,
                      study_uid=merged.get("studyInstanceUid"),
                      exam_time=merged.get("examTime"), warnings=n.warnings)
        if exam is None:
            exam = self._insert(hid, acc, ExamState.SYNCED, b,
                                last_type=events[0].code if events else None, **values)
            counts.new += 1
        elif exam.content_hash != digest or exam.state is ExamState.QUARANTINED:
            if exam.state is ExamState.QUARANTINED:
                log.info("reports.quarantine_cleared", exam_id=exam.id, accession_no=acc)
            exam = self._update(exam, b, state=self._settled_state(exam, b),
                                last_type=events[0].code if events else exam.last_type,
                                **values)
            counts.changed += 1
        else:
            counts.unchanged += 1
        for event in events if events is not None else implied_by(merged):
            exam = self._event(exam, event, b)

    def _insert(self, hid: str, acc: str, state: ExamState, b: _Batch,
                **values: Any) -> Exam:
        """Insert an exam and keep it in the batch as the store now holds it."""
        exam_id = self.store.exams.insert(hospital_id=hid, accession_no=acc, state=state,
                                          **values)
        now = time.time()
        held = dict(study_uid=None, record={}, content_hash=None, report_version=0,
                    report_hash=None, quarantine_reason=None, warnings=[], exam_time=None,
                    last_type=None)
        return b.keep(Exam(id=exam_id, hospital_id=hid, accession_no=acc, state=state,
                           created_at=now, updated_at=now, **{**held, **values}))

    def _update(self, exam: Exam, b: _Batch, **values: Any) -> Exam:
        """Update an exam and keep it in the batch as the store now holds it."""
        self.store.exams.update(exam.id, **values)
        return b.keep(replace(exam, updated_at=time.time(), **values))

    def _settled_state(self, exam: Exam, b: _Batch) -> ExamState:
        """The state of a good row: a withdrawal or deletion outlives later rows."""
        if b.has_task(exam, Withdraw.kind):
            return ExamState.WITHDRAWN
        if exam.state is ExamState.DELETED:
            return ExamState.DELETED
        return ExamState.REPORTED if exam.report_version else ExamState.SYNCED

    def _reject(self, n: Normalised,
                events: list[EventType] | None, counts: Counts) -> None:
        counts.quarantined += 1
        code = events[0].code if events else None
        first = self.store.exams.reject(hospital_id=n.record["hospitalId"],
                                        event_type=code, content_hash=content_hash(n.record),
                                        record=n.record, reason=n.reason)
        if first:
            log.warning("reports.row_rejected", type=code, reason=mask_text(n.reason))
            self._audit_foreign(n, f"row:{content_hash(n.record)[:16]}")

    def _quarantine(self, exam: Exam | None, n: Normalised,
                    merged: dict[str, Any], digest: str, events: list[EventType] | None,
                    b: _Batch) -> None:
        b.counts.quarantined += 1
        acc, hid = merged["accessionNo"], merged["hospitalId"]
        if exam is not None and exam.content_hash == digest and exam.state is ExamState.QUARANTINED:
            return  # the same bad row, re-read in the overlap
        values = dict(record=merged, content_hash=digest,
                      quarantine_reason=n.reason, warnings=n.warnings,
                      last_type=events[0].code if events else None)
        if exam is None:
            self._insert(hid, acc, ExamState.QUARANTINED, b, **values)
        else:
            self._update(exam, b, state=ExamState.QUARANTINED, **values)
        log.warning("reports.row_quarantined", accession_no=acc, hospital_id=hid,
                    type=values["last_type"], reason=mask_text(n.reason))
        self._audit_foreign(n, f"exam:{hid}:{acc}")

    def _audit_foreign(self, n: Normalised, subject: str) -> None:
        """A row naming a hospital we do not serve is kept on the audit trail: it may be
        another hospital's patient data in our PACS view."""
        foreign = next((p for p in n.problems if p.field == "hospitalId"), None)
        if foreign is None:
            return
        log.warning("reports.foreign_hospital_row", subject=subject, hospital_id=foreign.value,
                    served=list(self.rules.served))
        self.store.audit.record("reports", "reports.foreign_hospital_quarantined", subject,
                                "quarantined", {"hospitalId": foreign.value,
                                                "served": list(self.rules.served)})

    # -- events --------------------------------------------------------------------------
    def _event(self, exam: Exam, event: EventType, b: _Batch) -> Exam:
        """Enqueue what `event` causes; the exam as it is afterwards."""
        if exam.state in STICKY_STATES:
            return exam  # refunded or deleted: nothing more to fetch or push
        if event is PERFORMED:
            if not b.has_task(exam, Retrieve.kind):
                self._retrieve(exam, "exam performed", self.settle_delay, b)
        elif event in (AUDITED, MODIFIED):
            return self._report(exam, event, b)
        elif event is REFUNDED:
            return self._refund(exam, b)
        return exam

    def _retrieve(self, exam: Exam, reason: str, delay: float,
                  b: _Batch, reopen: bool = False) -> None:
        rec = exam.record
        task = Retrieve(study_uid=exam.study_uid or None, accession_no=exam.accession_no,
                        hospital_id=exam.hospital_id, exam_id=exam.id, reason=reason,
                        image_paths=tuple(image_paths(rec.get("imagePath")))
                        if self.images_http else None)
        # once study_uid is known, a retrieve queued by accession number is superseded
        out = self.store.tasks.enqueue(task, delay=delay, reopen=reopen, exam_id=exam.id,
                                       study_uid=exam.study_uid)
        b.counts.tasks += int(out.created)
        # the same call again in this batch would change nothing: as if the exam had one
        b.tasked(exam, Retrieve.kind)

    def _report(self, exam: Exam, event: EventType, b: _Batch) -> Exam:
        digest = content_hash({f: exam.record.get(f) for f in REPORT_FIELDS})
        if digest == exam.report_hash:
            return exam
        version = exam.report_version + 1
        if exam.report_version and exam.record.get("modifyTime"):
            event = MODIFIED  # read first by the audit-time query, but it is a modification
        self.store.exams.add_version(exam.id, version, event.code, digest, exam.record)
        exam = self._update(exam, b, report_version=version, report_hash=digest,
                            state=ExamState.REPORTED)
        out = self.store.tasks.enqueue(PushReport(exam.id, version), exam_id=exam.id,
                                       study_uid=exam.study_uid)
        b.counts.tasks += int(out.created)
        log.info("reports.report_version", exam_id=exam.id, accession_no=exam.accession_no,
                 version=version, type=event.code)
        if event is AUDITED:  # images may have grown since the first retrieve
            self._retrieve(exam, "report audited: completeness re-check", 0.0, b,
                           reopen=True)
        return exam

    def _refund(self, exam: Exam, b: _Batch) -> Exam:
        ids = self.store.exams.active_task_ids(exam.id, exam.study_uid, CANCEL_ON_REFUND)
        for task_id in ids:
            b.counts.cancelled += int(self.store.tasks.cancel(
                task_id, "exam refunded at the PACS (type 2)"))
        exam = self._update(exam, b, state=ExamState.WITHDRAWN)
        out = self.store.tasks.enqueue(
            Withdraw(exam.hospital_id, exam.accession_no, exam.id,
                     exam.record.get("refundTime")),
            exam_id=exam.id, study_uid=exam.study_uid)
        b.counts.tasks += int(out.created)
        b.tasked(exam, Withdraw.kind)
        log.info("reports.exam_withdrawn", exam_id=exam.id, accession_no=exam.accession_no,
                 cancelled=len(ids))
        return exam


def _older(new: dict[str, Any], held: dict[str, Any]) -> bool:
    """Whether `new` is an older state of the report than `held`: its latest report
    time is earlier (both known). Never reverts an exam to a row it has outgrown."""
    def latest(rec: dict[str, Any]) -> dt.datetime | None:
        times = [rec.get(f) for f in ("modifyTime", "auditTime", "reportTime")]
        known = [dt.datetime.fromisoformat(t) for t in times if isinstance(t, str) and t]
        return max(known) if known else None

    a, b = latest(new), latest(held)
    return a is not None and b is not None and a < b


def content_hash(value: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(value).encode()).hexdigest()
