"""More upload tasks for the worker that runs one: claimed together, leases renewed while
the batch runs, each one's outcome recorded on its own as the worker records a task's.

The worker pool leases, renews and records only the task it claimed (the first); this
keeps the others' leases alive and writes their outcomes. What is left unfinished when the
batch ends (a bug, a shutdown) is handed back untouched, so it runs again at once.
"""

from __future__ import annotations

import threading
import time

import structlog

from ..config import TasksConfig
from ..state import Store, Task
from ..state.kinds import Upload
from ..tasks import Fatal, RetryLater, backoff

log = structlog.get_logger("dicomgate.tasks")


class BatchClaims:
    def __init__(self, store: Store, cfg: TasksConfig, owner: str, max_attempts: int):
        self.store = store
        self.cfg = cfg
        self.owner = owner
        self.max_attempts = max_attempts
        self.tasks: dict[int, Task] = {}
        self._lock = threading.Lock()  # `tasks` is read by the renewing thread
        self._started: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, limit: int) -> list[Task]:
        """Up to `limit` due upload tasks besides the one already running."""
        got = self.store.tasks.claim_more(Upload.kind, self.owner, self.cfg.lease, limit)
        now = time.monotonic()
        for t in got:
            with self._lock:
                self.tasks[t.id] = t
            self._started[t.id] = now
            log.info("task.started", task_id=t.id, kind=t.kind, key=t.key, attempt=t.attempts,
                     batched=True)
        if got and self._thread is None:
            self._thread = threading.Thread(target=self._renew, name="upload-batch-leases",
                                            daemon=True)
            self._thread.start()
        return got

    def _take(self, task: Task) -> bool:
        with self._lock:
            return self.tasks.pop(task.id, None) is not None

    def give_back(self, task: Task, why: str) -> None:
        """Untouched (the attempt does not count): due again at once, for another worker."""
        if self._take(task):
            self.store.tasks.release(task.id, self.owner)
            log.info("task.handed_back", task_id=task.id, kind=task.kind, key=task.key,
                     reason=why)

    def done(self, task: Task, result: str) -> None:
        if not self._take(task):
            return
        self.store.tasks.complete(task.id, self.owner, result)
        log.info("task.done", task_id=task.id, kind=task.kind, key=task.key,
                 seconds=self._seconds(task), result=result)

    def failed(self, task: Task, exc: Exception) -> None:
        """Record `exc` as the worker would for the task it runs."""
        if not self._take(task):
            return
        limit = task.max_attempts or self.max_attempts or self.cfg.max_attempts
        after = exc.after if isinstance(exc, RetryLater) else None
        if not isinstance(exc, RetryLater | Fatal):
            log.error("task.crashed", task_id=task.id, kind=task.kind,
                      error=f"{type(exc).__name__}: {exc}")
        error = str(exc) if isinstance(exc, RetryLater | Fatal) else \
            f"internal error: {type(exc).__name__}: {exc}"
        retry_in = None
        if not isinstance(exc, Fatal) and task.attempts < limit:
            retry_in = after if after is not None else backoff.delay(
                task.attempts, self.cfg.backoff_base, self.cfg.backoff_max)
        state = self.store.tasks.fail(task.id, self.owner, error, retry_in=retry_in)
        fields = dict(task_id=task.id, kind=task.kind, key=task.key, attempt=task.attempts,
                      max_attempts=limit, error=error, seconds=self._seconds(task),
                      retry_in=None if retry_in is None else round(retry_in, 1))
        (log.error if state == "dead" else log.warning)(
            "task.dead" if state == "dead" else "task.retry", **fields)

    def close(self) -> None:
        """Stop renewing; hand back what was not finished (it runs again at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            left = list(self.tasks.values())
            self.tasks.clear()
        for task in left:
            try:
                self.store.tasks.release(task.id, self.owner)
            except Exception as exc:  # the lease ends by itself and the task is reclaimed
                log.error("task.release_failed", task_id=task.id,
                          error=f"{type(exc).__name__}: {exc}")
                continue
            log.warning("task.released", task_id=task.id, kind=task.kind, key=task.key,
                        reason="its batch ended before it did; it runs again")

    def _renew(self) -> None:
        period = max(1.0, min(self.cfg.lease / 3, 5.0))
        while not self._stop.wait(period):
            with self._lock:
                ids = list(self.tasks)
            if not ids:
                continue
            try:
                self.store.tasks.renew(ids, self.owner, self.cfg.lease)
            except Exception as exc:  # the next period tries again; the lease is long
                log.error("tasks.heartbeat_failed", error=f"{type(exc).__name__}: {exc}",
                          tasks=len(ids))

    def _seconds(self, task: Task) -> float:
        return round(time.monotonic() - self._started.get(task.id, time.monotonic()), 3)
