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
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..state import DicomEvent, Store
from .move_diagnosis import explain, relevant_rejections, window_start
from .move_outcome import MoveVerdicts
from .qr_association import PacsRefused, PacsUnavailable
from .scu import MoveResult, PacsClient

log = structlog.get_logger("dicomgate.images.repair")

IMAGE_MOVE_BATCH = 200  # SOP Instance UIDs per image-level C-MOVE
OUR_RECORD_GRACE = 0.5  # seconds: see Mover.move
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
    """pacs.move with what dicomgate saw around it: the failed sub-operations and the
    Portal AET's own rejections are logged, recorded for the study, and explain a
    refusal (move_diagnosis.py)."""
    store: Store
    pacs: PacsClient
    sop_classes: dict[str, str] = field(default_factory=dict)  # SOP UID -> SOP class
    progress: Callable[[str, int, int], None] | None = None  # (study, held, expected)
    held: int = 0  # instances present before the first move
    expected: int = 0
    moved: int = 0  # completed sub-operations so far
    # our side's causes of failed C-MOVEs (move_outcome.py); None: blame as move_diagnosis
    verdicts: MoveVerdicts | None = None

    def _told(self, study_uid: str) -> Callable[[int, int], None] | None:
        """The C-MOVE's pending responses (completed, remaining) as study progress."""
        if self.progress is None:
            return None
        tell, base = self.progress, self.held + self.moved
        return lambda completed, _remaining: tell(study_uid, base + completed, self.expected)

    def move(self, study_uid: str, level: str, keys: dict[str, str | list[str]]
             ) -> MoveResult:
        started = time.time()
        try:
            result = self.pacs.move(level, keys, self._told(study_uid),
                                    activity=lambda: self.store.instances.last_change(study_uid))
        except (PacsRefused, PacsUnavailable) as exc:
            partial = getattr(exc, "move_result", None)
            seen = self._seen(study_uid, started)
            if not seen and partial is not None and partial.completed == 0:
                # Our SCP records a refusal in its own thread as the PACS hears it; the
                # PACS may answer us first: look again once before blaming the PACS.
                time.sleep(OUR_RECORD_GRACE)
                seen = self._seen(study_uid, started)
            if partial is not None and (partial.failed or partial.failed_uids):
                self._failed_suboperations(study_uid, level, partial, seen)
            if partial is not None and self._ours(study_uid, level, exc, started):
                self.moved += partial.completed
                return partial  # what arrived is checked by the caller
            raise explain(exc, partial, seen, self.pacs.dicom, self.pacs.where,
                          self._classes()) from None
        self.moved += result.completed
        if result.failed or result.failed_uids:
            self._failed_suboperations(study_uid, level, result,
                                       self._seen(study_uid, started))
        return result

    def _ours(self, study_uid: str, level: str, exc: Exception, started: float) -> bool:
        """Our side caused the failure: keep the cause; OurSide when asking again is
        pointless until it recovers (disk floor, SCP process died)."""
        if self.verdicts is None or not self.verdicts.absorb(self.store, started):
            return False
        log.warning("move.failed_on_our_side", study_uid=study_uid, level=level,
                    pacs_said=str(exc), ours=self.verdicts.reason())
        self.verdicts.stop_if_pointless()
        return True

    def _classes(self) -> set[str]:
        """The SOP classes the PACS's C-FIND gave for this study (empty: it gave none)."""
        return {c for c in self.sop_classes.values() if c}

    def _seen(self, study_uid: str, started: float) -> list[DicomEvent]:
        """The Portal AET's rejections in this move's window, tied to the study."""
        kinds = ("association_rejected", "context_rejected", "store_refused")
        events = self.store.dicom_events
        seen = [e for e in events.since(window_start(started, "context_rejected"), kinds)
                if e.at >= window_start(started, e.kind)]
        relevant = {e.id for e in relevant_rejections(seen, self._classes())}
        events.attribute([e.id for e in seen if e.study_uid is None and
                          (e.sop_uid is None or e.sop_uid in self.sop_classes) and
                          (e.kind != "context_rejected" or e.id in relevant)], study_uid)
        return seen

    def _failed_suboperations(self, study_uid: str, level: str, result: MoveResult,
                              seen: list[DicomEvent]) -> None:
        ours = {e.sop_uid: e for e in seen if e.sop_uid}
        contexts = {e.sop_class_uid: e for e in relevant_rejections(seen, self._classes())}
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
                    continue
                moved, failed = moved + r.completed, failed + r.failed
        if errors and not moved:
            raise PacsRefused(errors[-1])
        return moved, failed

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
