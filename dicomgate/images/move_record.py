"""What the Portal AET recorded for one C-MOVE (state/portal_associations.py).

The retrieve sends each C-MOVE with its own Message ID; the PACS's C-STOREs name it as
move originator, and the Portal AET files every incoming association under the C-MOVE it
serves (or, for a PACS that names none, under the studies it carried). Every write lands
before the Portal AET answers the PACS, so once the PACS sends its final C-MOVE response
this record is complete: what arrived, what was refused and why, or that no association
came at all. Nothing is taken from other studies' C-MOVEs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..state import DicomEvent, PortalAssociation, Store

RECORDED = ("store_refused", "association_rejected")


@dataclass(frozen=True)
class PortalSaw:
    associations: list[PortalAssociation]  # those that served this C-MOVE
    # opened during it and carried nothing (rejected, or closed empty): they may be its
    unclaimed: list[PortalAssociation] = field(default_factory=list)
    events: list[DicomEvent] = field(default_factory=list)  # on the associations above
    deaths: list[DicomEvent] = field(default_factory=list)  # Portal AET process deaths

    @property
    def stored(self) -> int:
        return sum(a.stored for a in self.associations)

    @property
    def refusals(self) -> list[DicomEvent]:
        return [e for e in self.events if e.kind == "store_refused"]

    @property
    def rejections(self) -> list[DicomEvent]:
        return [e for e in self.events if e.kind == "association_rejected"]

    def nothing_at_all(self) -> bool:
        """The Portal AET saw no association that could be this C-MOVE's, and did not
        die meanwhile."""
        return not self.associations and not self.unclaimed and not self.deaths


def read(store: Store, our_aet: str, msg_id: int, study_uid: str, started: float
         ) -> PortalSaw:
    """The record of the C-MOVE with Message ID `msg_id`, started at `started`."""
    served = store.portal_associations.of_move(our_aet, msg_id, study_uid, started)
    unclaimed = [a for a in store.portal_associations.unclaimed(started)
                 if a.id not in {s.id for s in served}]
    events = store.dicom_events.of_associations([a.id for a in served + unclaimed], RECORDED)
    deaths = store.dicom_events.since(started, ("scp_process_died",))
    if not deaths:  # the supervisor may not have noticed yet: the process itself tells
        deaths = [_gone(a) for a in served + unclaimed
                  if a.scp_pid is not None and not alive(a.scp_pid)][:1]
    return PortalSaw(served, unclaimed, events, deaths)


def alive(pid: int) -> bool:
    """Whether a Portal AET process still runs (a zombie not yet reaped has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _gone(a: PortalAssociation) -> DicomEvent:
    """The death of the process that received association `a`, as the supervisor will
    record it a moment later."""
    return DicomEvent(id=-a.id, at=time.time(), kind="scp_process_died", calling_aet=None,
                      peer=None, sop_class_uid=None, transfer_syntaxes=None, sop_uid=None,
                      study_uid=None, status=None, association_id=a.id,
                      reason=f"process {a.scp_pid}, which received this C-MOVE's "
                             "association, ended during it; restarted")


def last_activity(store: Store, our_aet: str, msg_id: int, study_uid: str,
                  started: float) -> float | None:
    """When the Portal AET last handled a C-STORE of this C-MOVE (the stall watch's sign of
    life: it moves for every instance, even one received again unchanged)."""
    served = store.portal_associations.of_move(our_aet, msg_id, study_uid, started)
    times = [a.last_at for a in served if a.last_at is not None]
    return max(times) if times else None
