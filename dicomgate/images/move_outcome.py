"""Why a C-MOVE failed, decided from what dicomgate saw itself.

A PACS ends a C-MOVE with a failure status (Orthanc: 0xC000) whenever a sub-operation
failed, whoever caused it. When our own Portal AET refused an instance (disk floor), could
not store it (bad instance, quarantined) or its process died during the C-MOVE, the PACS is
not to blame: the retrieve waits or retries with our reason. Only a failure nothing on our
side explains is the PACS's refusal (and only one with nothing delivered is for a person).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..state import ScpEvent, Store
from .scu import MoveFailed

# Our SCP notes an event a moment after it answered; the PACS's final status may be faster.
EVENT_GRACE = 1.0


@dataclass
class MoveVerdicts:
    """What the failed C-MOVEs of one retrieve run came to."""

    ours: list[ScpEvent] = field(default_factory=list)  # our side's causes
    pacs: list[MoveFailed] = field(default_factory=list)  # failures nothing of ours explains

    def add(self, store: Store, exc: MoveFailed, started: float) -> None:
        events = _ours(store, started)
        if not events:
            time.sleep(EVENT_GRACE)
            events = _ours(store, started)
        if events:
            self.ours.extend(e for e in events if e not in self.ours)
        else:
            self.pacs.append(exc)

    def quarantined(self) -> dict[str, str]:
        return {e.sop_uid: e.reason for e in self.ours
                if e.cause == "quarantined" and e.sop_uid}

    def causes(self) -> set[str]:
        return {e.cause for e in self.ours}

    def our_reason(self) -> str:
        """One line per cause, the latest instance of each, for the task's error."""
        latest: dict[str, ScpEvent] = {}
        for e in self.ours:
            latest[e.cause] = e
        parts = []
        for cause, e in latest.items():
            n = sum(1 for x in self.ours if x.cause == cause)
            what = {"out_of_space": "our storage SCP refused instances (0xA700)",
                    "quarantined": "our storage SCP could not store instances (quarantined)",
                    "failed": "our storage SCP failed to store instances",
                    "process_died": "our storage SCP process died"}.get(cause, cause)
            parts.append(f"{what}: {e.reason}" + (f" ({n} times)" if n > 1 else ""))
        return "; ".join(parts)


def _ours(store: Store, started: float) -> list[ScpEvent]:
    return store.scp_events.between(started - 0.5, time.time() + 0.5)
