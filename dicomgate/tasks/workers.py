"""Worker threads: claim a due task with a lease, run its handler, record the outcome."""

from __future__ import annotations

import threading
import time
import traceback

import structlog

from ..config import TasksConfig
from ..state import Store, Task
from . import backoff
from .errors import Fatal, RetryLater
from .registry import Registry

log = structlog.get_logger("dicomgate.tasks")


class WorkerPool:
    def __init__(self, store: Store, registry: Registry, cfg: TasksConfig, owner: str):
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.owner = owner
        self.stopping = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, Task] = {}
        self._lock = threading.Lock()
        store.tasks.listeners.append(lambda _kind: self.wake())

    # -- life cycle ---------------------------------------------------------------------
    def reclaim_orphans(self) -> int:
        """Only for the holder of the daemon lock: leases of any other owner are orphans."""
        reclaimed = self.store.tasks.reclaim_foreign(self.owner)
        if reclaimed:
            log.warning("tasks.reclaimed", count=reclaimed,
                        reason="leased by a process that is no longer running")
        return reclaimed

    def start(self) -> None:
        for i in range(self.cfg.workers):
            t = threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give running tasks `grace` seconds, then release their leases."""
        self.stopping.set()
        self.wake()
        deadline = time.monotonic() + (self.cfg.shutdown_grace if grace is None else grace)
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._running.values())
        for task in left:
            self.store.tasks.release(task.id, self.owner)
            log.warning("task.released", task_id=task.id, kind=task.kind,
                        reason="shutdown before the task finished; it will run again")

    def wake(self) -> None:
        """New work was enqueued in this process: look now rather than at the next poll."""
        with self._wake:
            self._wake.notify_all()

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    # -- foreground use (CLI) -----------------------------------------------------------
    def drain(self, kinds: list[str] | None = None, deadline: float | None = None,
              max_tasks: int = 100_000) -> int:
        """Run due tasks in this thread until none is due (or the deadline): for the CLI."""
        kinds = kinds or self.registry.kinds()
        done = 0
        while done < max_tasks and not self.stopping.is_set():
            if deadline is not None and time.monotonic() > deadline:
                break
            task = self.store.tasks.claim(kinds, self.owner, self.cfg.lease)
            if task is None:
                break
            self.run(task)
            done += 1
        return done

    # -- internals ----------------------------------------------------------------------
    def _loop(self) -> None:
        kinds = self.registry.kinds()
        while not self.stopping.is_set():
            try:
                task = self.store.tasks.claim(kinds, self.owner, self.cfg.lease)
            except Exception as exc:  # database locked for too long, disk full...
                log.error("tasks.claim_failed", error=str(exc))
                task = None
            if task is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            self.run(task)

    def run(self, task: Task) -> str:
        """Run one claimed task; returns its new state."""
        reg = self.registry.get(task.kind)
        with self._lock:
            self._running[task.id] = task
        started = time.monotonic()
        log.info("task.started", task_id=task.id, kind=task.kind, key=task.key,
                 attempt=task.attempts)
        try:
            if reg is None:
                raise Fatal(f"no handler registered for task kind {task.kind!r}")
            result = reg.handler(task)
        except Fatal as exc:
            return self._failed(task, str(exc), dead=True, started=started)
        except RetryLater as exc:
            return self._failed(task, str(exc), after=exc.after, started=started)
        except Exception as exc:
            log.error("task.crashed", task_id=task.id, kind=task.kind,
                      error=f"{type(exc).__name__}: {exc}",
                      where=traceback.format_exc(limit=-3).strip().splitlines()[-3:])
            return self._failed(task, f"internal error: {type(exc).__name__}: {exc}",
                                started=started)
        finally:
            with self._lock:
                self._running.pop(task.id, None)
        self.store.tasks.complete(task.id, self.owner, result)
        log.info("task.done", task_id=task.id, kind=task.kind, key=task.key,
                 seconds=round(time.monotonic() - started, 3), result=result)
        return "done"

    def _failed(self, task: Task, error: str, *, started: float, dead: bool = False,
                after: float | None = None) -> str:
        reg = self.registry.get(task.kind)
        limit = task.max_attempts or (reg.max_attempts if reg else None) or self.cfg.max_attempts
        retry_in = None
        if not dead and task.attempts < limit:
            retry_in = after if after is not None else backoff.delay(
                task.attempts, self.cfg.backoff_base, self.cfg.backoff_max)
        state = self.store.tasks.fail(task.id, self.owner, error, retry_in=retry_in, dead=dead)
        event = log.error if state == "dead" else log.warning
        event("task.dead" if state == "dead" else "task.retry", task_id=task.id,
              kind=task.kind, key=task.key, attempt=task.attempts, max_attempts=limit,
              retry_in=None if retry_in is None else round(retry_in, 1), error=error,
              seconds=round(time.monotonic() - started, 3))
        return state

    def _heartbeat(self) -> None:
        """Renew the leases of running tasks; reclaim leases that expired elsewhere."""
        period = max(1.0, self.cfg.lease / 3)
        while not self.stopping.wait(period):
            try:
                with self._lock:
                    ids = list(self._running)
                self.store.tasks.renew(ids, self.owner, self.cfg.lease)
                n = self.store.tasks.reclaim_expired()
                if n:
                    log.warning("tasks.reclaimed", count=n, reason="lease expired")
            except Exception as exc:
                log.error("tasks.heartbeat_failed", error=str(exc))
