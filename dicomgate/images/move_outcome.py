"""Why a C-MOVE failed when the fault is on our side, and what the retrieve does about it.

A PACS ends a C-MOVE with a failure status (Orthanc: 0xC000) whenever a sub-operation
failed, whoever caused it. When our own Portal AET refused an instance (disk floor,
0xA700), could not store it (a bad instance, quarantined, 0xC000) or failed (0x0110) on
an association of *this* C-MOVE, or its process died during it, the PACS is not to blame:
the retrieve waits or retries with our reason, and only what a person must fix (a bad
instance) ends dead, after the rest of the study was fetched. The facts come from the
Portal AET's record of the C-MOVE (move_record.py); the repair ladder's Mover hands failed
C-MOVEs here before move_diagnosis blames the PACS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..state import DicomEvent
from ..tasks import RetryLater, WaitFor
from .move_record import PortalSaw

DISK_RECHECK = 10.0  # a retrieve waiting for free space looks again this often
SCP_RESTART_WAIT = 5.0  # our SCP process died mid C-MOVE: it is back within seconds

CAUSE_TEXT = {"out_of_space": "our Portal AET refused instances (0xA700, disk floor)",
              "quarantined": "our Portal AET could not store instances (quarantined)",
              "failed": "our Portal AET failed to store instances (0x0110)",
              "process_died": "our Portal AET's process died"}


def cause_of(event: DicomEvent) -> str | None:
    if event.kind == "scp_process_died":
        return "process_died"
    if event.kind != "store_refused":
        return None
    return {"0xA700": "out_of_space", "0xC000": "quarantined"}.get(event.status or "",
                                                                     "failed")


class OurSide(Exception):
    """A C-MOVE failed because of our side (disk floor, SCP process died): asking the PACS
    again, at any level, would fail the same way until that recovers."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


@dataclass
class MoveVerdicts:
    """Our side's causes behind the failed C-MOVEs of one retrieve run."""

    ours: list[tuple[str, DicomEvent]] = field(default_factory=list)

    def absorb(self, saw: PortalSaw) -> bool:
        """A C-MOVE just ended with a failure status: True (and the causes kept) when the
        Portal AET's record of it shows our side caused it."""
        found = [(cause, e) for e in [*saw.refusals, *saw.deaths]
                 if (cause := cause_of(e)) is not None]
        known = {e.id for _, e in self.ours}
        self.ours.extend((c, e) for c, e in found if e.id not in known)
        return bool(found)

    def causes(self) -> set[str]:
        return {c for c, _ in self.ours}

    def quarantined(self) -> dict[str, str]:
        return {e.sop_uid: e.reason for c, e in self.ours if c == "quarantined" and e.sop_uid}

    def reason(self) -> str:
        """One clause per cause (its latest event), for the task's error."""
        latest: dict[str, DicomEvent] = {}
        counts: dict[str, int] = {}
        for c, e in self.ours:
            latest[c] = e
            counts[c] = counts.get(c, 0) + 1
        return "; ".join(f"{CAUSE_TEXT.get(c, c)}: {e.reason}"
                         + (f" ({counts[c]} times)" if counts[c] > 1 else "")
                         for c, e in latest.items())

    def stop_if_pointless(self) -> None:
        """Asking again cannot work until our side recovers: end the run (OurSide)."""
        causes = self.causes()
        for cause in ("out_of_space", "process_died"):
            if cause in causes:
                raise OurSide(self.reason(), cause)

    def explain_missing(self, study_uid: str, n: int, expected: int) -> None:
        """Instances still missing after the run and our side failed some: retry, with
        our reason (never the PACS's AE registration)."""
        if self.ours:
            raise RetryLater(f"study {study_uid}: {n} of {expected} instances missing "
                             f"because {self.reason()}; retrying")


def wait_for_our_side(study_uid: str | None, exc: OurSide) -> WaitFor:
    if exc.cause == "out_of_space":
        return WaitFor(f"study {study_uid}: C-MOVE failed because {exc}; the retrieve resumes "
                       "once space is freed", "disk space", after=DISK_RECHECK)
    return WaitFor(f"study {study_uid}: C-MOVE failed because {exc}; retrying",
                   "storage SCP", after=SCP_RESTART_WAIT)
