"""One study's C-MOVE and its verdict: the whole study when we hold nothing of it and the
PACS's count vouches for the move; otherwise the PACS's list of SOP Instance UIDs decides
what is missing, and the repair ladder (repair.py) asks for exactly that."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from ..state import Store
from ..state.names import Fact, StudyState
from ..tasks import RetryLater
from .move_outcome import MoveVerdicts
from .repair import Ladder, Mover, Step
from .scu import PacsClient, PacsRefused
from .study_expected import (
    Expected,
    Missing,
    at_least_held,
    present_sop_uids,
    quarantined_of,
    unsendable_of,
)
from .study_finish import Finisher

log = structlog.get_logger("dicomgate.images.retrieve")

STALL_FACT = Fact.MOVE_STALLED


def moves_end_again(store: Store) -> None:
    """A C-MOVE ended: the stall /healthz reports is over."""
    if store.facts.get(STALL_FACT):
        store.facts.set(STALL_FACT, None)


def stall_health(store: Store) -> str | None:
    """For /healthz: the last C-MOVE was abandoned for lack of progress (cleared when a
    retrieve's C-MOVEs end again)."""
    fact = store.facts.get(STALL_FACT)
    if not fact:
        return None
    return f"{fact['error']} (study {fact.get('study_uid') or '?'})"


class StudyMove:
    def __init__(self, store: Store, pacs: PacsClient, finisher: Finisher,
                 progress: Callable[[str, int, int], None] | None = None):
        self.store = store
        self.pacs = pacs
        self.where = pacs.where
        self.finisher = finisher
        self.progress = progress  # (study_uid, instances held, expected)

    def complete(self, study_uid: str, count: int) -> str:
        """A batched C-MOVE brought all of the study's instances."""
        moves_end_again(self.store)
        return self.finisher.finish(study_uid, Expected(None, count), 0, count,
                                    time.monotonic(), [])

    def study(self, study_uid: str, *, accession_no: str | None = None,
              exam_id: int | None = None, moved: int | None = None) -> str:
        """`moved`: a batched C-MOVE brought all of the study's instances (that many)."""
        self.store.instances.ensure_study(study_uid, accession_no=accession_no,
                                          exam_id=exam_id)
        if moved is not None and len(present_sop_uids(self.store, study_uid)) == moved:
            return self.complete(study_uid, moved)
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
            moves_end_again(self.store)
            return self.finisher.finish(study_uid, Expected(None, count), 0,
                                        result.completed, started, [])
        log.info("study.listing", study_uid=study_uid, expected=count, held=held,
                 completed=result.completed, failed=result.failed, warning=result.warning,
                 reason="the C-MOVE did not account for every instance: listing them")
        return None

    def _listed(self, pacs: PacsClient, study_uid: str, started: float,
                verdicts: MoveVerdicts) -> str:
        """Completeness by the PACS's list of SOP Instance UIDs; move what is missing."""
        exp = self._expected(pacs, study_uid)
        if exp.count == 0:
            raise RetryLater(f"{self.where} lists no instance for study {study_uid} "
                             "(yet); will ask again")
        have = present_sop_uids(self.store, study_uid)
        exp = at_least_held(study_uid, exp, have, self.where)
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
        moves_end_again(self.store)
        exp = at_least_held(study_uid, exp, present_sop_uids(self.store, study_uid),
                            self.where)
        if missing:
            verdicts.explain_missing(study_uid, exp.size(missing), exp.count)
        bad = quarantined_of(exp, verdicts)
        unsendable = unsendable_of(missing, mover.unsendable)
        if unsendable and len(unsendable) == exp.size(missing):
            bad = {**bad, **unsendable}  # the PACS cannot send them: deliver the rest
            missing = {}
        if bad and not missing:
            return self.finisher.without(study_uid, exp, bad, moved, set(unsendable))
        return self.finisher.finish(study_uid, exp, missing, moved, started, steps)

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
