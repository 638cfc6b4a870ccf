"""C-MOVEs of one study, watched: every failed sub-operation and every rejection the
Portal AET saw is logged and recorded for the study; and the repair ladder that fetches
what is still missing.

The ladder asks at ever coarser levels until nothing is missing, because PACSs differ in
what they serve: IMAGE level with a list of SOP Instance UIDs (the cheapest) → IMAGE level
one UID per request (pynetdicom's qrscp refuses lists) → SERIES level → STUDY level. A
step the PACS refuses is logged and the next one is tried; a PACS that stops answering
ends the ladder (the task retries later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from ..state import DicomEvent, Store
from . import move_record
from .move_diagnosis import PortalAetRejected, contexts_since, explain, relevant_rejections
from .move_outcome import MoveVerdicts
from .move_record import PortalSaw
from .qr_association import PacsRefused, PacsUnavailable
from .scu import Cancelled, MoveResult, PacsClient

log = structlog.get_logger("dicomgate.images.repair")

IMAGE_MOVE_BATCH = 200  # SOP Instance UIDs per image-level C-MOVE
MAX_PER_UID = 500  # beyond this many missing, per-UID requests are not worth it: SERIES

Missing = dict[str, set[str]]  # series UID -> SOP Instance UIDs


@dataclass
class Step:
    name: str  # "image-list" | "image-each" | "series" | "study"
    missing_before: int
    missing_after: int = 0
    moved: int = 0
    failed: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Mover:
    """pacs.move with what the Portal AET recorded for it (move_record.py): the failed
    sub-operations and the Portal AET's own refusals are logged, recorded for the study,
    and explain a refusal (move_diagnosis.py)."""
    store: Store
    pacs: PacsClient
    sop_classes: dict[str, str] = field(default_factory=dict)  # SOP UID -> SOP class
    progress: Callable[[str, int, int], None] | None = None  # (study, held, expected)
    held: int = 0  # instances present before the first move
    expected: int = 0
    moved: int = 0  # completed sub-operations so far
    # our side's causes of failed C-MOVEs (move_outcome.py); None: blame as move_diagnosis
    verdicts: MoveVerdicts | None = None
    # SOP UID -> what the PACS answered when asked for that instance alone and it failed
    unsendable: dict[str, str] = field(default_factory=dict)
    reached: bool = False  # a C-MOVE of this run brought instances: the PACS reaches us

    def _told(self, study_uid: str) -> Callable[[int, int], None] | None:
        """The C-MOVE's pending responses (completed, remaining) as study progress."""
        if self.progress is None:
            return None
        tell, base = self.progress, self.held + self.moved
        return lambda completed, _remaining: tell(study_uid, base + completed, self.expected)

    def move(self, study_uid: str, level: str, keys: dict[str, str | list[str]]
             ) -> MoveResult:
        started = time.time()
        msg_id = self.pacs.next_message_id()
        me = self.pacs.dicom.ae_title
        try:
            result = self.pacs.move(
                level, keys, self._told(study_uid), msg_id=msg_id,
                activity=lambda: move_record.last_activity(self.store, me, msg_id,
                                                           study_uid, started))
        except (PacsRefused, PacsUnavailable) as exc:
            if isinstance(exc, Cancelled):
                raise
            partial = getattr(exc, "move_result", None)
            saw = move_record.read(self.store, me, msg_id, study_uid, started)
            contexts = self._contexts(study_uid, started, saw)
            if partial is not None and (partial.failed or partial.failed_uids):
                self._failed_suboperations(study_uid, level, partial, saw, contexts)
            if partial is not None and self._ours(study_uid, level, exc, saw):
                self.moved += partial.completed
                return partial  # what arrived is checked by the caller
            if partial is not None and saw.stored and not saw.refusals:
                return self._partway(study_uid, level, exc, partial, saw)
            raise explain(exc, partial, saw, contexts, self.pacs.dicom, self.pacs.where,
                          self._classes(), reached=self.reached) from None
        self.moved += result.completed
        self.reached = self.reached or result.completed > 0
        if result.failed or result.failed_uids:
            saw = move_record.read(self.store, me, msg_id, study_uid, started)
            self._failed_suboperations(study_uid, level, result, saw,
                                       self._contexts(study_uid, started, saw))
        return result

    def _partway(self, study_uid: str, level: str, exc: Exception, partial: MoveResult,
                 saw: PortalSaw) -> MoveResult:
        """The PACS sent part of what was asked and then ended the C-MOVE with a failure,
        while the Portal AET stored all it was sent: what is missing is fetched in smaller
        requests by the caller (the repair ladder), down to single instances."""
        log.warning("move.failed_partway", study_uid=study_uid, level=level,
                    pacs_said=str(exc), stored=saw.stored,
                    then="the missing instances are asked for in smaller requests")
        done = replace(partial, completed=max(partial.completed, saw.stored))
        self.moved += done.completed
        self.reached = True
        return done

    def _ours(self, study_uid: str, level: str, exc: Exception, saw: PortalSaw) -> bool:
        """Our side caused the failure: keep the cause; OurSide when asking again is
        pointless until it recovers (disk floor, SCP process died)."""
        if self.verdicts is None or not self.verdicts.absorb(saw):
            return False
        log.warning("move.failed_on_our_side", study_uid=study_uid, level=level,
                    pacs_said=str(exc), ours=self.verdicts.reason())
        self.verdicts.stop_if_pointless()
        return True

    def _classes(self) -> set[str]:
        """The SOP classes the PACS's C-FIND gave for this study (empty: it gave none)."""
        return {c for c in self.sop_classes.values() if c}

    def _contexts(self, study_uid: str, started: float, saw: PortalSaw) -> list[DicomEvent]:
        """The presentation contexts the Portal AET rejected that can explain this C-MOVE;
        they and the rest of its record are tied to the study for `study show`."""
        events = self.store.dicom_events
        contexts = events.since(contexts_since(started), ("context_rejected",))
        relevant = relevant_rejections(contexts, self._classes())
        events.attribute([e.id for e in [*saw.events, *relevant] if e.study_uid is None],
                         study_uid)
        return contexts

    def _failed_suboperations(self, study_uid: str, level: str, result: MoveResult,
                              saw: PortalSaw, contexts_seen: list[DicomEvent]) -> None:
        ours = {e.sop_uid: e for e in saw.refusals if e.sop_uid}
        contexts = {e.sop_class_uid: e for e in relevant_rejections(contexts_seen,
                                                                    self._classes())}
        log.warning("move.suboperations_failed", study_uid=study_uid, level=level,
                    status=f"0x{result.status:04X}", failed=result.failed,
                    completed=result.completed, failed_sop_uids=list(result.failed_uids[:50]))
        only = next(iter(contexts.values())) if len(contexts) == 1 else None
        for uid in result.failed_uids:
            sop_class = self.sop_classes.get(uid) or None
            # the SOP class from C-FIND, else the one rejected context there was
            why = ours.get(uid) or (contexts.get(sop_class) if sop_class else only)
            if sop_class is None and why is not None:
                sop_class = why.sop_class_uid
            reason = (f"the Portal AET: {why.reason}" if why is not None else
                      "the PACS reported it failed; the Portal AET rejected nothing for it "
                      "(see the PACS log)")
            self.store.dicom_events.record(
                "suboperation_failed", reason, sop_uid=uid, study_uid=study_uid,
                sop_class_uid=sop_class, status=f"0x{result.status:04X}",
                transfer_syntaxes=(why.transfer_syntaxes or "").split("\\") if why else None)
        if result.failed and not result.failed_uids:
            self.store.dicom_events.record(
                "suboperation_failed", f"{result.failed} sub-operations failed; the PACS did "
                "not say which", study_uid=study_uid, status=f"0x{result.status:04X}")


class Ladder:
    def __init__(self, mover: Mover, missing_now: Callable[[], Missing]):
        self.mover = mover
        self.missing_now = missing_now

    def run(self, study_uid: str, missing: Missing) -> tuple[int, list[Step]]:
        """(instances moved, the steps taken); stops at the first step that completes."""
        steps: list[Step] = []
        moved = 0
        for name, action in (("image-list", self._image_list), ("image-each", self._each),
                             ("series", self._series), ("study", self._study)):
            if not missing:
                break
            if name == "image-each" and _size(missing) > MAX_PER_UID:
                continue
            step = Step(name, _size(missing))
            try:
                step.moved, step.failed = action(study_uid, missing)
            except PacsRefused as exc:
                step.error = str(exc)
            missing = self.missing_now()
            step.missing_after = _size(missing)
            moved += step.moved
            steps.append(step)
            self._log(study_uid, step)
        return moved, steps

    def _log(self, study_uid: str, step: Step) -> None:
        level = "info" if not step.missing_after else "warning"
        getattr(log, level)("study.repair_step", study_uid=study_uid, **step.as_dict())
        outcome = ("complete" if not step.missing_after else
                   f"{step.missing_after} still missing")
        reason = (f"repair {step.name}: asked for {step.missing_before}, {step.moved} moved, "
                  f"{outcome}" + (f"; refused: {step.error}" if step.error else ""))
        self.mover.store.dicom_events.record("repair_step", reason, study_uid=study_uid)

    # -- the steps: (moved, failed sub-operations) --------------------------------------
    def _image_list(self, study_uid: str, missing: Missing) -> tuple[int, int]:
        moved = failed = 0
        for series_uid, sops in missing.items():
            ordered = sorted(sops)
            for i in range(0, len(ordered), IMAGE_MOVE_BATCH):
                r = self.mover.move(study_uid, "IMAGE", {
                    "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                    "SOPInstanceUID": ordered[i:i + IMAGE_MOVE_BATCH]})
                moved, failed = moved + r.completed, failed + r.failed
        return moved, failed

    def _each(self, study_uid: str, missing: Missing) -> tuple[int, int]:
        moved = failed = 0
        errors = []
        for series_uid, sops in missing.items():
            for uid in sorted(sops):
                try:
                    r = self.mover.move(study_uid, "IMAGE", {
                        "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                        "SOPInstanceUID": uid})
                except PacsRefused as exc:  # one refused instance must not stop the rest
                    errors.append(str(exc))
                    if not isinstance(exc, PortalAetRejected):
                        self._unsendable(study_uid, uid, exc)
                    continue
                moved, failed = moved + r.completed, failed + r.failed
        if errors and not moved:
            raise PacsRefused(errors[-1])
        return moved, failed

    def _unsendable(self, study_uid: str, uid: str, exc: PacsRefused) -> None:
        """Asked for alone, the PACS did not send this instance and the Portal AET refused
        nothing: kept, so the retrieve can name it if every other way fails too."""
        result = getattr(exc, "move_result", None)
        status = f"0x{result.status:04X}" if result is not None else None
        self.mover.unsendable[uid] = str(exc).split("; ")[0]  # the PACS's own answer
        self.mover.store.dicom_events.record(
            "suboperation_failed", f"asked for on its own, the PACS did not send it ({exc})",
            sop_uid=uid, study_uid=study_uid, sop_class_uid=self.mover.sop_classes.get(uid),
            status=status)

    def _series(self, study_uid: str, missing: Missing) -> tuple[int, int]:
        moved = failed = 0
        for series_uid in sorted(missing):
            r = self.mover.move(study_uid, "SERIES", {"StudyInstanceUID": study_uid,
                                                      "SeriesInstanceUID": series_uid})
            moved, failed = moved + r.completed, failed + r.failed
        return moved, failed

    def _study(self, study_uid: str, _missing: Missing) -> tuple[int, int]:
        r = self.mover.move(study_uid, "STUDY", {"StudyInstanceUID": study_uid})
        return r.completed, r.failed


def _size(missing: Missing) -> int:
    return sum(len(s) for s in missing.values())


def give_up_detail(steps: list[Step], missing: Missing, where: str) -> str:
    """What a person can act on when every step left instances missing."""
    tried = "; ".join(f"{s.name}: {s.moved} moved" + (", refused" if s.error else "")
                      for s in steps)
    answers = list(dict.fromkeys(s.error for s in steps if s.error))
    said = f" Refusals: {' | '.join(answers)}." if answers else ""
    return (f"{_size(missing)} instances that {where} lists in C-FIND did not arrive at any "
            f"C-MOVE level ({tried}).{said} See `dicomgate study show` for each failed "
            "sub-operation and what the Portal AET rejected; if it rejected nothing, the "
            "PACS cannot read those files: check them on the PACS")
