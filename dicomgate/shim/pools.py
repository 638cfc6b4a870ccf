"""Bounded worker pools: each route runs in its pool; a full pool answers "busy" at once.

Lookups wait on outside platforms that may hang; they get their own small pool so that
report printing (qrurl/qrcode), login sync and deletion never queue behind them.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker of the pool is busy and its queue is full."""


@dataclass
class PoolStats:
    name: str
    workers: int
    queue: int
    in_flight: int
    busy_refusals: int


class BoundedPool:
    """A thread pool that holds at most `workers + queue` requests; past that, `submit`
    raises Busy instead of letting the queue grow."""

    def __init__(self, name: str, workers: int, queue: int):
        self.name = name
        self.workers = workers
        self.queue = queue
        self._ex = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"shim-{name}")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._refused = 0

    def submit(self, fn: Callable[[], T]) -> cf.Future[T]:
        with self._lock:
            if self._in_flight >= self.workers + self.queue:
                self._refused += 1
                raise Busy(self.name)
            self._in_flight += 1
        try:
            fut = self._ex.submit(fn)
        except RuntimeError:  # shut down
            self._release(None)
            raise Busy(self.name) from None
        fut.add_done_callback(self._release)
        return fut

    def run(self, fn: Callable[[], T]) -> T:
        """Run in the pool and wait (for a caller that already holds a thread)."""
        return self.submit(fn).result()

    def _release(self, _fut: object) -> None:
        with self._lock:
            self._in_flight -= 1

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self.name, self.workers, self.queue, self._in_flight,
                             self._refused)

    def shutdown(self, timeout: float) -> None:
        self._ex.shutdown(wait=False, cancel_futures=True)
        for t in list(getattr(self._ex, "_threads", ())):
            t.join(timeout=timeout)
