"""A C-MOVE that makes no progress is abandoned: no response and no instance received for
`pacs.timeout` means the PACS (or its sub-operations) hung; holding the association for
`move_timeout` (an hour) would only hold one of the retrieve slots as long.

Progress is either a C-MOVE response (pending ones count) or an instance of the study
landing in our spool (some PACS send no pending responses at all).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("dicomgate.images.retrieve")

# Activity outside the association: the epoch time of the newest instance received.
Activity = Callable[[], "float | None"]


class MoveWatch:
    """Started around one C-MOVE; calls `abort` once when it stalls."""

    def __init__(self, timeout: float, abort: Callable[[], None],
                 activity: Activity | None = None, period: float = 1.0):
        self.timeout = timeout
        self.abort = abort
        self.activity = activity
        self.period = min(period, max(0.1, timeout / 4))
        self.started = time.time()
        self.last_response = self.started
        self.stalled_for: float | None = None  # set when it gave up
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="move-watch", daemon=True)

    def __enter__(self) -> MoveWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def responded(self) -> None:
        self.last_response = time.time()

    def since_response(self) -> float:
        return time.time() - self.last_response

    def _last_sign_of_life(self) -> float:
        last = self.last_response
        if self.activity is not None:
            try:
                seen = self.activity()
            except Exception:  # a busy state store is no sign of a stalled PACS
                return time.time()
            if seen is not None:
                last = max(last, seen)
        return last

    def _run(self) -> None:
        while not self._done.wait(self.period):
            quiet = time.time() - self._last_sign_of_life()
            if quiet >= self.timeout:
                self.stalled_for = quiet
                self.abort()
                return
