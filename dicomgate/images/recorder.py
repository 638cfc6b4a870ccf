"""The Portal AET's one state-store writer: received instances recorded in groups.

Every association thread hands its write here and waits for it (an instance is recorded
before its C-STORE response is sent). One thread, so one database connection, whatever
thread received what. Instances waiting together are committed together (group commit):
while one transaction runs, the instances that arrive on other associations queue, and
the next transaction takes them all, at most MAX_GROUP, without waiting for more. So a
group adds no latency to a lone association, and with several at once (or a store whose
every commit is a network round trip, PostgreSQL) one commit serves many C-STOREs.

Other writes (association records, DICOM events) run one by one, in the order submitted.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("dicomgate.images.recorder")

MAX_GROUP = 64  # instances in one transaction at most
_NOTHING = object()  # no job taken off the queue


@dataclass
class Pending:
    """One instance's write, waiting in the queue; `future` is its result."""
    item: Any
    future: Future = field(default_factory=Future)


class Recorder:
    """`record(item)` for grouped instance writes, `submit(fn, ...)` for anything else;
    both return a Future. `commit_group(items)` writes a list of items in one transaction
    and returns their results in order; when it raises, every item of the group is tried
    again alone (`commit_one`), so one bad instance fails only its own C-STORE."""

    def __init__(self, commit_group: Callable[[list[Any]], list[Any]],
                 commit_one: Callable[[Any], Any]):
        self._commit_group = commit_group
        self._commit_one = commit_one
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.instances = 0  # recorded (or refused) since start
        self.transactions = 0  # group transactions they took
        self._thread = threading.Thread(target=self._run, name="spool-db", daemon=True)
        self._thread.start()

    def record(self, item: Any) -> Future:
        pending = Pending(item)
        self._put(pending)
        return pending.future

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._put((future, fn, args))
        return future

    def _put(self, job: Any) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the recorder is shut down")
            self._queue.put(job)

    def shutdown(self, wait: bool = True) -> None:
        """Run what is queued, then stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if wait:
            self._thread.join()
        log.info("recorder.stopped", instances=self.instances, transactions=self.transactions)

    # -- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        job = self._queue.get()
        while job is not None:
            if isinstance(job, Pending):
                group, job = self._gather(job)
                self._write(group)
                if job is _NOTHING:
                    job = self._queue.get()
                continue
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            job = self._queue.get()

    def _gather(self, first: Pending) -> tuple[list[Pending], Any]:
        """`first` and the instances queued behind it (at most MAX_GROUP); the job after
        them, if one was taken off the queue, is returned to run next (else _NOTHING)."""
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return group, _NOTHING
            if not isinstance(job, Pending):
                return group, job
            group.append(job)
        return group, _NOTHING

    def _write(self, group: list[Pending]) -> None:
        self.instances += len(group)
        self.transactions += 1
        try:
            results = self._commit_group([p.item for p in group])
        except BaseException as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            log.warning("recorder.group_failed", instances=len(group),
                        error=f"{type(exc).__name__}: {exc}",
                        effect="each instance is recorded alone")
            for p in group:
                self.transactions += 1
                try:
                    p.future.set_result(self._commit_one(p.item))
                except BaseException as one:
                    p.future.set_exception(one)
            return
        for p, result in zip(group, results, strict=True):
            p.future.set_result(result)
