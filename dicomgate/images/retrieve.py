"""The `retrieve` task: find what the PACS holds for a study, C-MOVE it to our Portal AET,
verify every instance is in the spool, repair what is missing, then mark it complete.

Idempotent by design: run again (report re-audited, `dicomgate pull`), it fetches only
the instances the spool lacks.

Here: the task as the worker runs it (batched or alone, stopping, every failure said as
the worker acts on it) and the resolution of an accession number to studies. One study's
move and verdict: study_move.py; what it should hold: study_expected.py; how it ends:
study_finish.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from ..state import Store, Task
from ..state.kinds import Retrieve
from ..tasks import Fatal, RetryLater, WaitFor
from .accession import pick_hospital
from .echo import FACT as ECHO_FACT
from .move_batch import Batcher, Prepared
from .move_diagnosis import PacsCannotReachUs
from .move_outcome import DISK_RECHECK, OurSide, wait_for_our_side
from .scu import MoveStalled, PacsClient, PacsRefused, PacsUnavailable
from .study_expected import present_sop_uids
from .study_finish import Finisher
from .study_move import STALL_FACT, StudyMove, stall_health

__all__ = ["MoveProgress", "Retriever", "present_sop_uids", "stall_health"]

log = structlog.get_logger("dicomgate.images.retrieve")

PACS_DOWN_RECHECK = 3600.0  # the echo says the PACS is down: `pacs.up` wakes us sooner
PACS_FLAKY_RECHECK = 30.0  # the echo says up, yet this C-MOVE could not be done
STOP_WAIT = 10.0  # seconds a stopping daemon waits for its cancelled retrieves to end
SHUTDOWN_TEXT = ("dicomgate stopped before this retrieve finished; it continues at the next "
                 "start (not counted as an attempt)")

# Told as the PACS reports C-MOVE sub-operations: (study_uid, instances held, expected).
MoveProgress = Callable[[str, int, int], None]


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
        self.one = StudyMove(store, pacs, Finisher(store, pacs.where, queue_uploads), progress)

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
        return self.one.complete(study_uid, count)

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
        return self.one.study(study_uid, accession_no=accession_no, exam_id=exam_id,
                              moved=moved)
