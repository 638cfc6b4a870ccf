"""Reconciliation: the net under the time windows.

For a past period, every exam the source shows (per event type, by that type's time)
is compared with the state store: an exam the store does not have, or whose event
time differs from the store's (a refund, audit or modification the windows did not
see: a late commit, a PACS clock behind ours), is reported, then re-read by its
accession number, which applies whatever it carries.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..state import Store
from ..state.exams import Exam
from ..state.names import ExamState, Fact
from . import duplicates
from .events import AUDITED, MODIFIED, POLL_ORDER, REFUNDED, EventType
from .poller import Poller
from .record import normalise
from .source import SourceError

log = structlog.get_logger("dicomgate.reports")
FACT = Fact.REPORTS_RECONCILE


@dataclass(frozen=True)
class Missed:
    type: int
    hospital_id: str
    accession_no: str
    view_time: str | None  # the event time the source shows
    held: str | None  # what the store holds: that time, the exam state; None: no exam


@dataclass
class ReconcileResult:
    start: dt.datetime
    end: dt.datetime
    checked: int = 0
    missed: list[Missed] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(sep=" "), "end": self.end.isoformat(sep=" "),
                "checked": self.checked, "missed": [m.__dict__ for m in self.missed],
                "repaired": self.repaired, "errors": self.errors,
                "seconds": round(self.seconds, 3)}


def reconcile(poller: Poller, start: dt.datetime, end: dt.datetime,
              repair: bool = True) -> ReconcileResult:
    """Compare [start, end) (naive local times) with the store; re-read what is missed."""
    result = ReconcileResult(start, end)
    began = time.monotonic()
    rules = poller.applier.rules
    for event in POLL_ORDER:
        try:
            for batch in poller.source.window(event, start, end):
                for row in duplicates.pick(batch, poller.tz):
                    rec = normalise(row, rules, [event]).record
                    acc, hid = rec.get("accessionNo"), rec["hospitalId"]
                    if not acc:
                        continue  # kept among the rejected rows by the window reads
                    result.checked += 1
                    exam = poller.store.exams.get(hid, acc)
                    shown = rec.get(event.time_field)
                    done, held = _applied(poller.store, exam, event, shown)
                    if not done:
                        result.missed.append(Missed(event.code, hid, acc, shown, held))
        except SourceError as exc:
            result.errors.append(f"type {event.code}: {exc}")
            poller.close()
    for m in result.missed:
        log.warning("reports.reconcile_missed", type=m.type, hospital_id=m.hospital_id,
                    accession_no=m.accession_no, view_time=m.view_time, held=m.held)
    if repair:
        for acc in sorted({m.accession_no for m in result.missed}):
            out = poller.sync_accession(acc)
            if out.error:
                result.errors.append(f"re-reading {acc}: {out.error}")
            else:
                result.repaired.append(acc)
    result.seconds = time.monotonic() - began
    log.info("reports.reconciled", start=str(start), end=str(end), checked=result.checked,
             missed=len(result.missed), repaired=len(result.repaired),
             errors=len(result.errors), seconds=round(result.seconds, 3))
    return result


def _applied(store: Store, exam: Exam | None, event: EventType, shown: str | None
             ) -> tuple[bool, str | None]:
    """Whether the store has acted on `event` as the source shows it, and what it holds.
    A quarantined exam counts: it is listed with its reason, not lost."""
    if exam is None:
        return False, None
    if exam.state is ExamState.QUARANTINED or not shown:
        return True, exam.state
    if event is REFUNDED:
        return exam.state is ExamState.WITHDRAWN, exam.state
    if event in (AUDITED, MODIFIED):  # the newest report version carries that time
        versions = store.exams.versions(exam.id)
        held = versions[-1]["record"].get(event.time_field) if versions else None
        return held == shown or exam.state in (ExamState.WITHDRAWN, ExamState.DELETED), held
    return True, exam.record.get(event.time_field)


def summary(r: ReconcileResult) -> str:
    text = (f"{r.start:%Y-%m-%d %H:%M} .. {r.end:%Y-%m-%d %H:%M}: {r.checked} checked, "
            f"{len(r.missed)} missed by the windows, {len(r.repaired)} re-read")
    return text + (f"; FAILED: {'; '.join(r.errors)}" if r.errors else "")
