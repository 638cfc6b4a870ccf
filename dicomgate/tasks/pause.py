"""Work paused because the state store cannot be written (disk full, database locked):
the reason for /healthz, and how long to wait before trying again."""

from __future__ import annotations

import threading
import time

from ..state.db import disk_full, store_unwritable

MAX_DELAY = 30.0


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Pause:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._since: float | None = None
        self._failures = 0
        self._last = 0.0

    @staticmethod
    def is_store_problem(exc: BaseException) -> bool:
        return store_unwritable(exc)

    def hold(self, exc: BaseException) -> bool:
        """Record a failed write; True when this starts a pause (log it once)."""
        with self._lock:
            started = self._reason is None
            if disk_full(exc):
                self._reason = ("work paused: the disk holding the state dir is full "
                                f"({describe(exc)}); free space there, work resumes by itself")
            else:
                self._reason = (f"work paused: the state store cannot be written "
                                f"({describe(exc)}); retrying")
            self._since = self._since or time.monotonic()
            self._failures += 1
            self._last = time.monotonic()
            return started

    def clear(self) -> float | None:
        """A write succeeded: the pause (if any) is over; returns how long it lasted."""
        with self._lock:
            if self._reason is None:
                return None
            lasted = time.monotonic() - (self._since or time.monotonic())
            self._reason, self._since, self._failures = None, None, 0
            return lasted

    def reason(self) -> str | None:
        return self._reason

    def delay(self) -> float:
        """Seconds between tries while paused (0 when not paused)."""
        with self._lock:
            if self._reason is None:
                return 0.0
            return min(MAX_DELAY, 2.0 ** min(self._failures - 1, 5))

    def due(self) -> bool:
        with self._lock:
            return self._reason is None or time.monotonic() - self._last >= min(
                MAX_DELAY, 2.0 ** min(self._failures - 1, 5))
