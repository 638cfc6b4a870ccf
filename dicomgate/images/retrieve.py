"""The `retrieve` task: find what the PACS holds for a study, C-MOVE it to our Portal AET,
verify every instance is in the spool, repair what is missing, then mark it complete.

Idempotent by design: run again (report re-audited, `dicomgate pull`), it fetches only
the instances the spool lacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ..state import Store, Task
from ..state.kinds import Upload
from ..tasks import Fatal, RetryLater, WaitFor
from .echo import FACT as ECHO_FACT
from .move_outcome import MoveVerdicts
from .scu import MoveFailed, MoveResult, MoveStalled, PacsClient, PacsRefused, PacsUnavailable

log = structlog.get_logger("dicomgate.images.retrieve")

PRESENT_STATES = ("uploaded", "delivered", "purged")  # left the spool on purpose
IMAGE_MOVE_BATCH = 200  # SOP Instance UIDs per image-level C-MOVE

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


STALL_FACT = "images.move_stalled"
DISK_RECHECK = 10.0      # a retrieve waiting for free space looks again this often
SCP_RESTART_WAIT = 5.0   # our SCP process died mid C-MOVE: it is back within seconds
PACS_DOWN_RECHECK = 3600.0  # the echo says the PACS is down: `pacs.up` wakes us sooner
PACS_FLAKY_RECHECK = 30.0  # the echo says up, yet this C-MOVE could not be done


class Retriever:
    def __init__(self, store: Store, pacs: PacsClient,
                 fetch_http: Callable[[Task], str] | None = None,
                 room: Callable[[], bool] | None = None, min_free_disk: int = 0,
                 pacs_down_wait: float = PACS_DOWN_RECHECK,
                 progress: MoveProgress | None = None):
        self.store = store
        self.pacs = pacs
        self.fetch_http = fetch_http
        self.progress = progress
        self.room = room  # False while free space is below dicom.min_free_disk
        self.min_free_disk = min_free_disk
        self.pacs_down_wait = pacs_down_wait  # tasks.backoff_max: `pacs.up` wakes sooner

    # -- task handler ---------------------------------------------------------------------
    def handle(self, task: Task) -> str:
        p = task.payload
        if p.get("image_paths"):
            if self.fetch_http is None:
                raise Fatal("payload has image_paths but HTTP image mode is not configured "
                            '(set [images] source = "http")')
            return self.fetch_http(task)
        if self.room is not None and not self.room():
            raise WaitFor(f"free space in the state dir is below dicom.min_free_disk "
                          f"({self.min_free_disk / 1e6:.0f} MB): our SCP would refuse every "
                          "instance; the retrieve starts once space is freed", "disk space",
                          after=DISK_RECHECK)
        try:
            return self.run(study_uid=p.get("study_uid"), accession_no=p.get("accession_no"),
                            exam_id=p.get("exam_id"))
        except MoveStalled as exc:
            self.store.facts.set(STALL_FACT, {"at": time.time(), "error": str(exc),
                                              "study_uid": p.get("study_uid")})
            log.warning("pacs.move_stalled", study_uid=p.get("study_uid"), error=str(exc))
            raise WaitFor(str(exc), "PACS", after=self._pacs_wait()) from None
        except PacsUnavailable as exc:
            raise WaitFor(str(exc), "PACS", after=self._pacs_wait()) from None
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
            exam_id: int | None = None) -> str:
        if study_uid:
            uids = [study_uid]
        elif accession_no:
            uids = self.resolve(accession_no)
        else:
            raise Fatal("retrieve payload needs study_uid or accession_no")
        return "; ".join(self.study(uid, accession_no=accession_no, exam_id=exam_id)
                         for uid in uids)

    def resolve(self, accession_no: str) -> list[str]:
        uids = self.pacs.studies_of_accession(accession_no)
        if not uids:
            raise RetryLater(f"{self.pacs.where} has no study with AccessionNumber "
                             f"{accession_no} (yet): the images may not be archived; "
                             "will ask again")
        for uid in uids:
            self.store.instances.ensure_study(uid, accession_no=accession_no)
        log.info("study.resolved", accession_no=accession_no, study_uids=uids)
        return uids

    # -- one study ------------------------------------------------------------------------
    def study(self, study_uid: str, *, accession_no: str | None = None,
              exam_id: int | None = None) -> str:
        self.store.instances.ensure_study(study_uid, accession_no=accession_no,
                                          exam_id=exam_id)
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
        mismatch, a failed move, something already held): None, and the full listing
        decides and repairs."""
        if self.store.instances.of_study(study_uid):
            return None
        try:
            count = pacs.study_instance_count(study_uid)
        except PacsRefused as exc:
            log.info("pacs.study_count_refused", study_uid=study_uid, error=str(exc))
            return None
        if not count:
            return None
        self.store.instances.set_study(study_uid, state="retrieving", expected_count=count)
        log.info("study.retrieve_started", study_uid=study_uid, expected=count, present=0,
                 missing=count, mode="study count")
        result = self._move_call(pacs, study_uid, "STUDY", {"StudyInstanceUID": study_uid},
                                 verdicts, self._told(study_uid, 0, count))
        held = len(present_sop_uids(self.store, study_uid))
        if (result.status, result.completed, result.failed, result.warning, held) == \
                (0x0000, count, 0, 0, count):
            return self._finish(study_uid, Expected(None, count), 0, result.completed, started)
        if verdicts.causes() & {"out_of_space", "process_died"}:
            # our own side failed it: wait for it to recover rather than list and ask again
            self._explain(study_uid, Expected(None, count), count - held, verdicts)
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
        self.store.instances.set_study(study_uid, state="retrieving", expected_count=exp.count)
        missing = self._still_missing(study_uid, exp, verdicts)  # less what we quarantined
        log.info("study.retrieve_started", study_uid=study_uid, expected=exp.count,
                 present=len(have), missing=exp.size(missing))
        moved = 0
        if missing:
            moved += self._move(pacs, study_uid, exp, missing, whole=not have,
                                verdicts=verdicts)
            missing = self._still_missing(study_uid, exp, verdicts)
        if missing and "process_died" not in verdicts.causes() and \
                "out_of_space" not in verdicts.causes():
            # repair: ask again for exactly what did not arrive (what our SCP quarantined
            # would only fail again)
            log.warning("study.repairing", study_uid=study_uid, missing=exp.size(missing))
            moved += self._move(pacs, study_uid, exp, missing, whole=False,
                                verdicts=verdicts)
            missing = self._still_missing(study_uid, exp, verdicts)
        if verdicts.ours or verdicts.pacs:
            self._explain(study_uid, exp, missing, verdicts)
        return self._finish(study_uid, exp, missing, moved, started,
                            quarantined=self._quarantined(exp, verdicts))

    def _still_missing(self, study_uid: str, exp: Expected, verdicts: MoveVerdicts) -> Missing:
        missing = exp.missing(present_sop_uids(self.store, study_uid))
        bad = self._quarantined(exp, verdicts)
        if bad and isinstance(missing, dict):
            missing = {s: u - set(bad) for s, u in missing.items() if u - set(bad)}
        return missing

    @staticmethod
    def _quarantined(exp: Expected, verdicts: MoveVerdicts) -> dict[str, str]:
        if exp.by_series is None:
            return {}
        bad = verdicts.quarantined()
        out = {}
        for uid in (u for s in exp.by_series.values() for u in s):
            # a PACS may cut an over-long UID to 64 characters in the C-STORE request
            hit = bad.get(uid) or bad.get(uid[:64]) if len(uid) > 64 else bad.get(uid)
            if hit:
                out[uid] = hit
        return out

    def _explain(self, study_uid: str, exp: Expected, missing: Missing,
                 verdicts: MoveVerdicts) -> None:
        """Instances are still missing after failed C-MOVEs: say whose doing it was."""
        if not missing:
            return
        n = exp.size(missing)
        causes = verdicts.causes()
        if "out_of_space" in causes:
            raise WaitFor(f"study {study_uid}: {n} of {exp.count} instances missing because "
                          f"{verdicts.our_reason()}; the retrieve resumes once space is freed",
                          "disk space", after=DISK_RECHECK)
        if "process_died" in causes:
            raise WaitFor(f"study {study_uid}: {n} of {exp.count} instances missing because "
                          f"{verdicts.our_reason()}; retrying", "storage SCP",
                          after=SCP_RESTART_WAIT)
        if verdicts.ours:
            raise RetryLater(f"study {study_uid}: {n} of {exp.count} instances missing "
                             f"because {verdicts.our_reason()}; retrying")
        last = verdicts.pacs[-1]
        if last.result.completed == 0 and n == exp.count:
            raise Fatal(str(last))  # nothing ever arrived: the PACS refuses us
        raise RetryLater(f"study {study_uid}: {n} of {exp.count} instances missing: "
                         f"{last.text}; will ask again")

    def _expected(self, pacs: PacsClient, study_uid: str) -> Expected:
        """The SOP Instance UIDs by series, or only their number when the PACS refuses
        image-level queries and answers NumberOfStudyRelatedInstances."""
        try:
            by_series = pacs.study_instances(study_uid)
            return Expected(by_series, sum(len(s) for s in by_series.values()))
        except PacsRefused as exc:
            log.warning("pacs.image_query_refused", study_uid=study_uid, error=str(exc))
            count = pacs.study_instance_count(study_uid)
            if count is None:
                raise PacsRefused(f"{exc}; and it gives no NumberOfStudyRelatedInstances "
                                  "either, so completeness cannot be checked") from None
            return Expected(None, count)

    def _move(self, pacs: PacsClient, study_uid: str, exp: Expected, missing: Missing,
              whole: bool, verdicts: MoveVerdicts) -> int:
        held = exp.count - exp.size(missing)
        if whole or exp.by_series is None:
            return self._move_call(pacs, study_uid, "STUDY", {"StudyInstanceUID": study_uid},
                                   verdicts, self._told(study_uid, held, exp.count)).completed
        assert isinstance(missing, dict)
        return self._move_images(pacs, study_uid, missing, verdicts, held, exp.count)

    def _move_images(self, pacs: PacsClient, study_uid: str, missing: dict[str, set[str]],
                     verdicts: MoveVerdicts, held: int, expected: int) -> int:
        moved = 0
        for series_uid, sops in missing.items():
            ordered = sorted(sops)
            for i in range(0, len(ordered), IMAGE_MOVE_BATCH):
                batch = ordered[i:i + IMAGE_MOVE_BATCH]
                moved += self._move_call(pacs, study_uid, "IMAGE", {
                    "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                    "SOPInstanceUID": batch}, verdicts,
                    self._told(study_uid, held + moved, expected)).completed
        return moved

    def _move_call(self, pacs: PacsClient, study_uid: str, level: str,
                   keys: dict[str, str | list[str]], verdicts: MoveVerdicts,
                   told: Callable[[int, int], None] | None) -> MoveResult:
        """One C-MOVE; a failure status is kept in `verdicts` (what arrived is checked
        afterwards), anything else propagates."""
        started = time.time()
        try:
            moved = pacs.move(level, keys, told,
                              activity=lambda: self.store.instances.last_change(study_uid))
        except MoveFailed as exc:
            verdicts.add(self.store, exc, started)
            log.warning("pacs.move_failed", study_uid=study_uid, level=level,
                        error=exc.text, completed=exc.result.completed,
                        failed=exc.result.failed,
                        our_side=verdicts.our_reason() or None)
            return exc.result
        if self.store.facts.get(STALL_FACT):
            self.store.facts.set(STALL_FACT, None)
        return moved

    def _told(self, study_uid: str, held: int, expected: int
              ) -> Callable[[int, int], None] | None:
        """The C-MOVE's pending responses (completed, remaining) as study progress."""
        if self.progress is None:
            return None
        tell = self.progress
        return lambda completed, _remaining: tell(study_uid, held + completed, expected)

    def _finish(self, study_uid: str, exp: Expected, missing: Missing, moved: int,
                started: float, quarantined: dict[str, str] | None = None) -> str:
        seconds = round(time.monotonic() - started, 2)
        if quarantined and not missing:
            return self._finish_without(study_uid, exp, quarantined, moved)
        if missing:
            n = exp.size(missing)
            detail: dict[str, Any] = {"missing": n, "expected": exp.count, "moved": moved}
            if isinstance(missing, dict):
                detail["missing_sop_uids"] = sorted(u for s in missing.values() for u in s)[:50]
            self.store.instances.set_study(study_uid, state="incomplete",
                                           expected_count=exp.count, detail=detail)
            log.warning("study.incomplete", study_uid=study_uid, missing=n, expected=exp.count,
                        moved=moved, seconds=seconds)
            raise RetryLater(f"study {study_uid}: {n} of {exp.count} instances did not arrive "
                             f"after C-MOVE and repair from {self.pacs.where}; will try again")
        with self.store.db.tx() as c:
            self.store.instances.set_study(study_uid, state="complete", expected_count=exp.count,
                                           detail={"moved": moved, "at": time.time()}, conn=c)
            self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid, conn=c)
        log.info("study.complete", study_uid=study_uid, instances=exp.count, moved=moved,
                 seconds=seconds)
        return f"study {study_uid}: complete, {exp.count} instances, {moved} moved"

    def _finish_without(self, study_uid: str, exp: Expected, quarantined: dict[str, str],
                        moved: int) -> str:
        """Everything arrived but what our SCP quarantined: deliver the rest, then leave
        the task dead so a person sees which instances the PACS must correct."""
        good = exp.count - len(quarantined)
        detail = {"moved": moved, "at": time.time(), "quarantined": sorted(quarantined)[:50]}
        with self.store.db.tx() as c:
            self.store.instances.set_study(study_uid, state="complete", expected_count=good,
                                           detail=detail, conn=c)
            self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid, conn=c)
        log.error("study.instances_quarantined", study_uid=study_uid, delivered=good,
                  quarantined=sorted(quarantined))
        raise Fatal(f"study {study_uid}: {good} of {exp.count} instances retrieved and "
                    f"queued for upload; {len(quarantined)} could not be stored and are in "
                    f"the quarantine dir ({_quarantine_text(quarantined)}): have the PACS "
                    "correct them, then `dicomgate tasks retry` this task")


Missing = dict[str, set[str]] | int


@dataclass(frozen=True)
class Expected:
    by_series: dict[str, set[str]] | None  # None: the PACS only told us how many
    count: int

    def missing(self, have: set[str]) -> Missing:
        if self.by_series is None:
            return max(0, self.count - len(have))
        return {series: sops - have for series, sops in self.by_series.items()
                if sops - have}

    @staticmethod
    def size(missing: Missing) -> int:
        return sum(len(s) for s in missing.values()) if isinstance(missing, dict) else missing


def _quarantine_text(quarantined: dict[str, str]) -> str:
    return "; ".join(f"{uid}: {why}" for uid, why in sorted(quarantined.items())[:5])


def stall_health(store: Store) -> str | None:
    """For /healthz: the last C-MOVE was abandoned for lack of progress (cleared by the
    next C-MOVE that ends)."""
    fact = store.facts.get(STALL_FACT)
    if not fact:
        return None
    return f"{fact['error']} (study {fact.get('study_uid') or '?'})"
