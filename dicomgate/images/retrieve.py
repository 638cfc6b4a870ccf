"""The `retrieve` task: find what the PACS holds for a study, C-MOVE it to our Portal AET,
verify every instance is in the spool, repair what is missing, then mark it complete.

Idempotent by design: run again (report re-audited, `dicomgate pull`), it fetches only
the instances the spool lacks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from ..state import Store, Task
from ..state.kinds import Retrieve, Upload
from ..state.names import Fact, StudyState
from ..tasks import Fatal, RetryLater, WaitFor
from .accession import pick_hospital
from .echo import FACT as ECHO_FACT
from .move_batch import Batcher, Prepared
from .move_diagnosis import PacsCannotReachUs
from .move_outcome import DISK_RECHECK, MoveVerdicts, OurSide, wait_for_our_side
from .repair import Ladder, Mover, Step, give_up_detail
from .scu import MoveStalled, PacsClient, PacsRefused, PacsUnavailable

log = structlog.get_logger("dicomgate.images.retrieve")

PRESENT_STATES = ("uploaded", "delivered", "purged")  # left the spool on purpose
STALL_FACT = Fact.MOVE_STALLED
PACS_DOWN_RECHECK = 3600.0  # the echo says the PACS is down: `pacs.up` wakes us sooner
PACS_FLAKY_RECHECK = 30.0  # the echo says up, yet this C-MOVE could not be done
STOP_WAIT = 10.0  # seconds a stopping daemon waits for its cancelled retrieves to end
SHUTDOWN_TEXT = ("dicomgate stopped before this retrieve finished; it continues at the next "
                 "start (not counted as an attempt)")

# Told as the PACS reports C-MOVE sub-operations: (study_uid, instances held, expected).
MoveProgress = Callable[[str, int, int], None]


def present_sop_uids(store: Store, study_uid: str) -> set[str]:
    """Instances we hold or have delivered: a 'received' row counts only if its file is
    still there with its recorded size (an operator may have cleaned the spool; a power
    loss may have truncated a file)."""
    out = set()
    for row in store.instances.of_study(study_uid):
        if row.state in PRESENT_STATES:
            out.add(row.sop_uid)
        elif row.state in ("received", "rejected") and row.path and _size(row.path) == row.size:
            out.add(row.sop_uid)
    return out


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class Retriever:
    def __init__(self, store: Store, pacs: PacsClient,
                 fetch_http: Callable[[Retrieve, Task], str] | None = None,
                 progress: MoveProgress | None = None, queue_uploads: bool = True,
                 room: Callable[[], str | None] | None = None,
                 pacs_down_wait: float = PACS_DOWN_RECHECK,
                 hospitals: tuple[str, ...] = ("",)):
        self.store = store
        self.pacs = pacs
        self.fetch_http = fetch_http
        self.progress = progress
        self.queue_uploads = queue_uploads  # False without [upstream]: nobody would run them
        self.room = room  # why a receiving file system is short of space, else None
        self.pacs_down_wait = pacs_down_wait  # tasks.backoff_max: `pacs.up` wakes sooner
        self.hospitals = hospitals  # gateway.served_hospitals: ours first
        self.stopping = threading.Event()
        self.batcher: Batcher | None = None  # the daemon's: due retrieves moved together
        self._prepared: dict[int, Prepared] = {}  # task id -> what its batch did for it
        self._prepared_lock = threading.Lock()
        self._running = 0
        self._idle = threading.Condition()

    # -- task handler ---------------------------------------------------------------------
    def handle(self, work: Retrieve, task: Task) -> str:
        with self._idle:
            self._running += 1
        try:
            return self._handle(work, task)
        except Exception:
            if self.stopping.is_set():  # our own stopping cut it short: not the PACS's doing
                raise WaitFor(SHUTDOWN_TEXT, "dicomgate stopping", after=0.0) from None
            raise
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def stop(self, wait: float = STOP_WAIT) -> int:
        """dicomgate is stopping: claim nothing more, abort the C-MOVEs under way (before the
        Portal AET stops), and wait (bounded) for their handlers to hand the tasks back."""
        self.stopping.set()
        aborted = self.pacs.cancel()
        deadline = time.monotonic() + wait
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            left = self._running
        log.info("retrieves.stopped", cancelled_associations=aborted, still_running=left)
        return left

    def _handle(self, work: Retrieve, task: Task) -> str:
        if self.stopping.is_set():
            raise WaitFor(SHUTDOWN_TEXT, "dicomgate stopping", after=0.0)
        if work.image_paths:
            if self.fetch_http is None:
                raise Fatal("payload has image_paths but HTTP image mode is not configured "
                            '(set [images] source = "http")')
            return self.fetch_http(work, task)
        with self._prepared_lock:
            pre = self._prepared.pop(task.id, None)
        if pre is None and self.batcher is not None and not (self.room and self.room()):
            more = self.batcher.claim_more(task)
            if more:
                return self._batch(work, task, more)
        return self._retrieve_task(work, task, pre)

    def _retrieve_task(self, work: Retrieve, task: Task, pre: Prepared | None) -> str:
        result = self.retrieve(study_uid=work.study_uid, accession_no=work.accession_no,
                               exam_id=work.exam_id, hospital_id=work.hospital_id, pre=pre)
        if pre is not None and pre.fresh_since is not None and task.lease_owner:
            self.store.tasks.drop_rerun(task.id, task.lease_owner, pre.fresh_since)
        return result

    def _batch(self, work: Retrieve, task: Task, more: list[Task]) -> str:
        """`task` and `more` (claimed beside it) moved together (move_batch.py); then each
        finishes as its own task: this one here, the others through the worker, which
        records each outcome on its own."""
        assert self.batcher is not None
        batcher = self.batcher
        with self._prepared_lock:  # none of them batches again, whatever happens
            self._prepared.update({t.id: Prepared() for t in more})
        with batcher.leased([t.id for t in more]):
            try:
                if self.stopping.is_set():
                    raise WaitFor(SHUTDOWN_TEXT, "dicomgate stopping", after=0.0)
                prepared = batcher.prepare(self.pacs, [task, *more], self.resolve,
                                           self._complete)
                with self._prepared_lock:
                    self._prepared.update({t.id: prepared[t.id] for t in more})
                return self._retrieve_task(work, task, prepared[task.id])
            finally:
                for t in more:  # stopping: handed back as never started (no attempt)
                    if self.stopping.is_set():
                        batcher.release(t)
                    else:
                        batcher.run_task(t)

    def retrieve(self, *, study_uid: str | None = None, accession_no: str | None = None,
                 exam_id: int | None = None, hospital_id: str | None = None,
                 pre: Prepared | None = None) -> str:
        """run(), with every failure said as the worker (and `dicomgate pull`) acts on it:
        WaitFor (our disk, our SCP, the PACS unreachable), RetryLater, Fatal."""
        short = self.room() if self.room is not None else None
        if short:
            raise WaitFor(f"{short}: our Portal AET would refuse every instance; the retrieve "
                          "starts by itself once space is freed", "disk space",
                          after=DISK_RECHECK)
        try:
            return self.run(study_uid=study_uid, accession_no=accession_no, exam_id=exam_id,
                            hospital_id=hospital_id, pre=pre)
        except OurSide as exc:
            raise wait_for_our_side(study_uid, exc) from None
        except MoveStalled as exc:
            self.store.facts.set(STALL_FACT, {"at": time.time(), "error": str(exc),
                                              "study_uid": study_uid})
            log.warning("pacs.move_stalled", study_uid=study_uid, error=str(exc))
            raise WaitFor(str(exc), "PACS", after=self._pacs_wait()) from None
        except PacsUnavailable as exc:  # unreachable: waits, never exhausts the task
            raise WaitFor(str(exc), "PACS", after=self._pacs_wait()) from None
        except PacsCannotReachUs as exc:  # our AE's entry on the PACS, or the network
            raise RetryLater(str(exc)) from None
        except PacsRefused as exc:
            raise Fatal(str(exc)) from None

    def _pacs_wait(self) -> float:
        """How long a retrieve waits for the PACS: long while the echo says it is down
        (`pacs.up` wakes it), short when only this C-MOVE failed."""
        fact = self.store.facts.get(ECHO_FACT) or {}
        if fact.get("ok") is False:
            return self.pacs_down_wait
        return min(PACS_FLAKY_RECHECK, self.pacs_down_wait)

    def run(self, *, study_uid: str | None = None, accession_no: str | None = None,
            exam_id: int | None = None, hospital_id: str | None = None,
            pre: Prepared | None = None) -> str:
        pre = pre or Prepared()
        if pre.error is not None:  # its batch's C-FIND or C-MOVE failed for it
            raise pre.error
        if study_uid:
            uids = [study_uid]
        elif pre.uids is not None:
            uids = pre.uids
        elif accession_no:
            uids = self.resolve(accession_no, hospital_id or self.hospitals[0])
        else:
            raise Fatal("retrieve payload needs study_uid or accession_no")
        return "; ".join(pre.finished.get(uid) or self.study(
            uid, accession_no=accession_no, exam_id=exam_id, moved=pre.complete.get(uid))
            for uid in uids)

    def _complete(self, study_uid: str, count: int) -> str:
        """A batched C-MOVE brought all of the study's instances."""
        if self.store.facts.get(STALL_FACT):
            self.store.facts.set(STALL_FACT, None)  # C-MOVEs end again
        return self._finish(study_uid, Expected(None, count), 0, count, time.monotonic(), [])

    def resolve(self, accession_no: str, hospital_id: str,
                pacs: PacsClient | None = None) -> list[str]:
        """The studies of this hospital's exam: accession numbers are unique only within
        a hospital, and a hospital group may share one PACS (gateway.group_hospital_ids)."""
        found = (pacs or self.pacs).studies_of_accession(accession_no)
        if not found:
            raise RetryLater(f"{self.pacs.where} has no study with AccessionNumber "
                             f"{accession_no} (yet): the images may not be archived; "
                             "will ask again")
        uids = pick_hospital(found, hospital_id, self.hospitals, accession_no, self.pacs.where)
        for uid in uids:
            self.store.instances.ensure_study(uid, accession_no=accession_no)
        log.info("study.resolved", accession_no=accession_no, hospital_id=hospital_id,
                 study_uids=uids)
        return uids

    # -- one study ------------------------------------------------------------------------
    def study(self, study_uid: str, *, accession_no: str | None = None,
              exam_id: int | None = None, moved: int | None = None) -> str:
        """`moved`: a batched C-MOVE brought all of the study's instances (that many)."""
        self.store.instances.ensure_study(study_uid, accession_no=accession_no,
                                          exam_id=exam_id)
        if moved is not None and len(present_sop_uids(self.store, study_uid)) == moved:
            return self._complete(study_uid, moved)
        started = time.monotonic()
        verdicts = MoveVerdicts()
        with self.pacs.session() as pacs:  # one association for the queries and the move
            done = self._whole_study(pacs, study_uid, started, verdicts)
            if done is not None:
                return done
            return self._listed(pacs, study_uid, started, verdicts)

    def _whole_study(self, pacs: PacsClient, study_uid: str, started: float,
                     verdicts: MoveVerdicts) -> str | None:
        """A study we hold nothing of: ask the PACS how many instances it has (STUDY-level
        C-FIND), C-MOVE the whole study, and call it complete when the move reports exactly
        that many sub-operations completed, none failed or with warnings, and the spool
        holds exactly that many instances of the study. Anything else (no count, a
        mismatch, a failed move, something already held): None, and the SOP Instance UID
        listing decides and repairs."""
        if self.store.instances.of_study(study_uid):
            return None
        try:
            count = pacs.study_instance_count(study_uid)
        except PacsRefused as exc:
            log.info("pacs.study_count_refused", study_uid=study_uid, error=str(exc))
            return None
        if not count:
            return None
        self.store.instances.set_study(study_uid, state=StudyState.RETRIEVING, expected_count=count)
        log.info("study.retrieve_started", study_uid=study_uid, expected=count, present=0,
                 missing=count, mode="study count")
        mover = Mover(self.store, pacs, {}, self.progress, held=0, expected=count,
                      verdicts=verdicts)
        result = mover.move(study_uid, "STUDY", {"StudyInstanceUID": study_uid})
        held = len(present_sop_uids(self.store, study_uid))
        if (result.status, result.completed, result.failed, result.warning, held) == \
                (0x0000, count, 0, 0, count) and not result.failed_uids:
            if self.store.facts.get(STALL_FACT):
                self.store.facts.set(STALL_FACT, None)  # C-MOVEs end again
            return self._finish(study_uid, Expected(None, count), 0, result.completed,
                                started, [])
        log.info("study.listing", study_uid=study_uid, expected=count, held=held,
                 completed=result.completed, failed=result.failed, warning=result.warning,
                 reason="the C-MOVE did not account for every instance: listing them")
        return None

    def _listed(self, pacs: PacsClient, study_uid: str, started: float,
                verdicts: MoveVerdicts) -> str:
        """Completeness by the PACS's list of SOP Instance UIDs; move what is missing."""
        exp = self._expected(pacs, study_uid)
        if exp.count == 0:
            raise RetryLater(f"{self.pacs.where} lists no instance for study {study_uid} "
                             "(yet); will ask again")
        have = present_sop_uids(self.store, study_uid)
        exp = at_least_held(study_uid, exp, have, self.pacs.where)
        missing = self._still_missing(study_uid, exp, verdicts)  # less what we quarantined
        if not missing and self._already_delivered(study_uid):
            return f"study {study_uid}: delivered, {exp.count} instances, 0 moved"
        self.store.instances.set_study(study_uid, state=StudyState.RETRIEVING,
                                       expected_count=exp.count)
        log.info("study.retrieve_started", study_uid=study_uid, expected=exp.count,
                 present=len(have), missing=exp.size(missing))
        mover = Mover(self.store, pacs, dict(exp.classes), self.progress,
                      held=exp.count - exp.size(missing), expected=exp.count,
                      verdicts=verdicts)
        moved, steps = 0, []
        if missing and (not have or exp.by_series is None):  # the whole study at once
            moved += mover.move(study_uid, "STUDY", {"StudyInstanceUID": study_uid}).completed
            missing = self._still_missing(study_uid, exp, verdicts)
        if missing:  # ask again, ever coarser, for exactly what is not here
            log.warning("study.repairing", study_uid=study_uid, missing=exp.size(missing))
            more, steps = self._repair(mover, study_uid, exp, missing, verdicts)
            moved += more
            missing = self._still_missing(study_uid, exp, verdicts)
        if self.store.facts.get(STALL_FACT):
            self.store.facts.set(STALL_FACT, None)  # C-MOVEs end again
        exp = at_least_held(study_uid, exp, present_sop_uids(self.store, study_uid),
                            self.pacs.where)
        if missing:
            verdicts.explain_missing(study_uid, exp.size(missing), exp.count)
        bad = quarantined_of(exp, verdicts)
        unsendable = unsendable_of(missing, mover.unsendable)
        if unsendable and len(unsendable) == exp.size(missing):
            bad = {**bad, **unsendable}  # the PACS cannot send them: deliver the rest
            missing = {}
        if bad and not missing:
            return self._finish_without(study_uid, exp, bad, moved, set(unsendable))
        return self._finish(study_uid, exp, missing, moved, started, steps)

    def _still_missing(self, study_uid: str, exp: Expected, verdicts: MoveVerdicts) -> Missing:
        """What is not here, less what our SCP quarantined (asking again would only fail
        again: the PACS must correct it)."""
        missing = exp.missing(present_sop_uids(self.store, study_uid))
        bad = set(quarantined_of(exp, verdicts))
        if bad and isinstance(missing, dict):
            missing = {s: u - bad for s, u in missing.items() if u - bad}
        return missing

    def _already_delivered(self, study_uid: str) -> bool:
        """Nothing is missing and the cloud has it all: leave the study as it is (pulled
        again, it would go back to 'complete' and be uploaded again for nothing)."""
        study = self.store.instances.study(study_uid) or {}
        if study.get("state") != "delivered":
            return False
        log.info("study.already_delivered", study_uid=study_uid)
        return True

    def _repair(self, mover: Mover, study_uid: str, exp: Expected,
                missing: Missing, verdicts: MoveVerdicts) -> tuple[int, list[Step]]:
        if exp.by_series is None:  # only a count: the whole study again
            return mover.move(study_uid, "STUDY", {"StudyInstanceUID": study_uid}).completed, []
        assert isinstance(missing, dict)

        def missing_now() -> dict[str, set[str]]:
            now = self._still_missing(study_uid, exp, verdicts)
            assert isinstance(now, dict)
            return now

        return Ladder(mover, missing_now).run(study_uid, missing)

    def _expected(self, pacs: PacsClient, study_uid: str) -> Expected:
        """The SOP Instance UIDs by series, or only their number when the PACS refuses
        image-level queries and answers NumberOfStudyRelatedInstances."""
        try:
            listing = pacs.study_instances(study_uid)
            return Expected(listing.by_series,
                            sum(len(s) for s in listing.by_series.values()),
                            tuple(listing.sop_classes.items()))
        except PacsRefused as exc:
            log.warning("pacs.image_query_refused", study_uid=study_uid, error=str(exc))
            count = pacs.study_instance_count(study_uid)
            if count is None:
                raise PacsRefused(f"{exc}; and it gives no NumberOfStudyRelatedInstances "
                                  "either, so completeness cannot be checked") from None
            return Expected(None, count)

    def _finish(self, study_uid: str, exp: Expected, missing: Missing, moved: int,
                started: float, steps: list[Step]) -> str:
        seconds = round(time.monotonic() - started, 2)
        if missing:
            n = exp.size(missing)
            detail: dict[str, Any] = {"missing": n, "expected": exp.count, "moved": moved}
            why = f"{n} of {exp.count} instances did not arrive after C-MOVE and repair"
            if isinstance(missing, dict):
                detail["missing_sop_uids"] = sorted(u for s in missing.values() for u in s)[:50]
                if steps:
                    why = give_up_detail(steps, missing, self.pacs.where)
            detail["repair"] = [s.as_dict() for s in steps]
            detail["why"] = why
            self.store.instances.set_study(study_uid, state=StudyState.INCOMPLETE,
                                           expected_count=exp.count, detail=detail)
            log.warning("study.incomplete", study_uid=study_uid, missing=n, expected=exp.count,
                        moved=moved, seconds=seconds, why=why)
            raise RetryLater(f"study {study_uid}: {why}; will try again")
        with self.store.transaction():
            self.store.instances.set_study(study_uid, state=StudyState.COMPLETE,
                                           expected_count=exp.count,
                                           detail={"moved": moved, "at": time.time()})
            if self.queue_uploads:
                self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)
        log.info("study.complete", study_uid=study_uid, instances=exp.count, moved=moved,
                 seconds=seconds, **exp.short_count())
        return f"study {study_uid}: complete, {exp.count} instances, {moved} moved" + (
            f" ({self.pacs.where} counted {exp.pacs_count})" if exp.pacs_count else "")

    def _finish_without(self, study_uid: str, exp: Expected, left_out: dict[str, str],
                        moved: int, unsendable: set[str]) -> str:
        """Everything arrived but what our SCP quarantined or the PACS cannot send: deliver
        the rest, then leave the task dead so a person sees which instances the PACS must
        correct."""
        good = exp.count - len(left_out)
        quarantined = {u: w for u, w in left_out.items() if u not in unsendable}
        detail = {"moved": moved, "at": time.time(),
                  "quarantined": sorted(quarantined)[:50],
                  "unsendable": {u: left_out[u] for u in sorted(unsendable)[:50]}}
        with self.store.transaction():
            self.store.instances.set_study(study_uid, state=StudyState.COMPLETE,
                                           expected_count=good, detail=detail)
            if self.queue_uploads:
                self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)
        queued = " and queued for upload" if self.queue_uploads else ""
        parts = []
        if quarantined:
            log.error("study.instances_quarantined", study_uid=study_uid, delivered=good,
                      quarantined=sorted(quarantined))
            parts.append(f"{len(quarantined)} could not be stored and are in the quarantine "
                         f"dir ({_quarantine_text(quarantined)})")
        if unsendable:
            log.error("study.instances_unsendable", study_uid=study_uid, delivered=good,
                      unsendable=sorted(unsendable))
            parts.append(f"{len(unsendable)} the PACS did not send even when asked for one "
                         f"by one ({_quarantine_text({u: left_out[u] for u in unsendable})}): "
                         "check those files on the PACS (damaged or unreadable: its log "
                         "says which)")
        raise Fatal(f"study {study_uid}: {good} of {exp.count} instances retrieved{queued}; "
                    + "; ".join(parts) + ": have the PACS correct them, then "
                    "`dicomgate tasks retry` this task")


Missing = dict[str, set[str]] | int


@dataclass(frozen=True)
class Expected:
    by_series: dict[str, set[str]] | None  # None: the PACS only told us how many
    count: int
    classes: tuple[tuple[str, str], ...] = ()  # (SOP Instance UID, SOP Class UID)
    pacs_count: int | None = None  # the PACS's own figure, when fewer than we hold

    def short_count(self) -> dict[str, int]:
        return {"pacs_count": self.pacs_count} if self.pacs_count is not None else {}

    def missing(self, have: set[str]) -> Missing:
        if self.by_series is None:
            return max(0, self.count - len(have))
        return {series: sops - have for series, sops in self.by_series.items()
                if sops - have}

    @staticmethod
    def size(missing: Missing) -> int:
        return sum(len(s) for s in missing.values()) if isinstance(missing, dict) else missing


def at_least_held(study_uid: str, exp: Expected, held: set[str], where: str) -> Expected:
    """The study has at least every instance of it we hold: a PACS whose count or listing
    says fewer (an index that lags an upload, a response lost on the way) is not taken as
    the truth, or a study one short would be called complete."""
    listed = ({u for s in exp.by_series.values() for u in s} if exp.by_series is not None
              else set())
    count = len(listed | held) if exp.by_series is not None else len(held)
    if count <= exp.count:
        return exp
    log.warning("study.count_raised", study_uid=study_uid, pacs_count=exp.count,
                expected=count, held=len(held),
                why=f"we hold more instances of the study than {where} counted or listed: "
                    "the larger figure is expected")
    return replace(exp, count=count, pacs_count=exp.pacs_count or exp.count)


def quarantined_of(exp: Expected, verdicts: MoveVerdicts) -> dict[str, str]:
    """{expected SOP UID: reason} for those our SCP quarantined during this run."""
    if exp.by_series is None:
        return {}
    bad = verdicts.quarantined()
    out = {}
    for uid in (u for s in exp.by_series.values() for u in s):
        # a PACS may cut an over-long UID to 64 characters in the C-STORE request
        hit = bad.get(uid) or (bad.get(uid[:64]) if len(uid) > 64 else None)
        if hit:
            out[uid] = hit
    return out


def unsendable_of(missing: Missing, unsendable: dict[str, str]) -> dict[str, str]:
    """{missing SOP UID: what the PACS answered} for those it did not send when asked for
    one by one."""
    if not isinstance(missing, dict):
        return {}
    return {u: unsendable[u] for s in missing.values() for u in s if u in unsendable}


def _quarantine_text(quarantined: dict[str, str]) -> str:
    return "; ".join(f"{uid}: {why}" for uid, why in sorted(quarantined.items())[:5])


def stall_health(store: Store) -> str | None:
    """For /healthz: the last C-MOVE was abandoned for lack of progress (cleared when a
    retrieve's C-MOVEs end again)."""
    fact = store.facts.get(STALL_FACT)
    if not fact:
        return None
    return f"{fact['error']} (study {fact.get('study_uid') or '?'})"
