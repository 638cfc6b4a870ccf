"""Worker threads: claim a due task with a lease, run its handler, record the outcome.

Workers cannot die: every exception around claiming, running and recording is contained.
When the state store cannot be written (disk full, database locked), work pauses with the
reason on /healthz and resumes by itself once a write succeeds; an outcome that could not
be recorded is kept and recorded then. Each lane (see registry.py) has its own threads.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from ..config import TasksConfig
from ..state import Store, Task
from ..state.names import Fact, TaskState
from . import backoff
from .errors import Fatal, RetryLater, WaitFor
from .pause import Pause, describe
from .registry import Registry

log = structlog.get_logger("dicomgate.tasks")

IDLE_POLL = 1.0  # seconds between looks at the queue when nothing woke the workers
WRITE_PROBE = Fact.TASKS_WRITE_PROBE


class Batching(Protocol):
    """What the worker pool offers a handler that takes more tasks of its kind along."""

    def claim_more(self, kind: str, limit: int) -> list[Task]: ...
    def run(self, task: Task) -> TaskState: ...
    def finish(self, task: Task, outcome: str | Exception) -> TaskState | None: ...
    def give_back(self, task: Task, why: str) -> bool: ...


@dataclass(frozen=True)
class _Worker:
    lane: str
    kinds: tuple[str, ...]
    index: int
    thread: threading.Thread


class WorkerPool:
    def __init__(self, store: Store, registry: Registry, cfg: TasksConfig, owner: str):
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.owner = owner
        self.stopping = threading.Event()
        self.pause = Pause()
        self._wake = threading.Condition()
        self._workers: list[_Worker] = []
        self._heartbeat_thread: threading.Thread | None = None
        self._running: dict[int, Task] = {}  # run here, or claimed along by a batch
        self._started: dict[int, float] = {}  # monotonic, for the seconds each took
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
        for lane, (kinds, size) in self.registry.lanes(self.cfg.workers).items():
            for i in range(size):
                self._workers.append(self._spawn(lane, tuple(kinds), i))
        self.keep_leases()

    def keep_leases(self) -> None:
        """Renew the leases of what runs here (and what a batch took along) until stop():
        start() does it for the daemon; a command that runs tasks in the foreground calls it."""
        if self._heartbeat_thread is None:
            hb = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
            hb.start()
            self._heartbeat_thread = hb

    def _spawn(self, lane: str, kinds: tuple[str, ...], index: int) -> _Worker:
        t = threading.Thread(target=self._loop, args=(list(kinds),),
                             name=f"worker-{lane}-{index}", daemon=True)
        t.start()
        return _Worker(lane, kinds, index, t)

    def stop_claiming(self) -> None:
        """Claim no new task from now on; running ones go on (stop() waits for them)."""
        self.stopping.set()
        self.wake()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give running tasks `grace` seconds, then release their leases."""
        self.stopping.set()
        self.wake()
        deadline = time.monotonic() + (self.cfg.shutdown_grace if grace is None else grace)
        threads = [w.thread for w in self._workers]
        if self._heartbeat_thread is not None:
            threads.append(self._heartbeat_thread)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._running.values())
        for task in left:
            try:
                self.store.tasks.release(task.id, self.owner)
            except Exception as exc:  # the lease ends by itself; the next start reclaims
                log.error("task.release_failed", task_id=task.id, error=describe(exc))
                continue
            log.warning("task.released", task_id=task.id, kind=task.kind,
                        reason="shutdown before the task finished; it will run again")

    def wake(self) -> None:
        """New work was enqueued in this process: look now rather than at the next poll."""
        with self._wake:
            self._wake.notify_all()

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    # -- health -------------------------------------------------------------------------
    def alive(self) -> tuple[int, int]:
        """(worker threads running, worker threads started)."""
        return sum(1 for w in self._workers if w.thread.is_alive()), len(self._workers)

    def health(self) -> str | None:
        """For /healthz: None when every worker runs and work is not paused."""
        alive, total = self.alive()
        if total and alive < total:
            return (f"{alive} of {total} worker threads are running (restarting the "
                    "others; see task.worker_died in the log)")
        return self.pause.reason()

    def lanes_status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            running = list(self._running.values())
        for lane, (kinds, size) in self.registry.lanes(self.cfg.workers).items():
            busy = sum(1 for t in running if t.kind in kinds)
            out[lane] = f"{busy} of {size} busy ({', '.join(kinds)})"
        return out

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
    def _loop(self, kinds: list[str]) -> None:
        while not self.stopping.is_set():
            try:
                self._once(kinds)
            except BaseException as exc:  # noqa: BLE001 - a worker must outlive any bug
                if self.stopping.is_set():
                    return
                log.error("task.worker_error", error=describe(exc),
                          where=_where(exc))
                self.stopping.wait(1.0)

    def _once(self, kinds: list[str]) -> None:
        task = self._claim(kinds)
        if task is None:
            with self._wake:
                self._wake.wait(timeout=self.pause.delay() or IDLE_POLL)
            return
        self.run(task)

    def _claim(self, kinds: list[str]) -> Task | None:
        if self.pause.reason() is not None and not self._probe():
            return None  # the store cannot be written yet
        try:
            return self.store.tasks.claim(kinds, self.owner, self.cfg.lease)
        except Exception as exc:  # disk full, database locked for too long...
            self._store_failed("claim", exc)
            return None

    def _probe(self) -> bool:
        """While paused: a real write (a claim that finds nothing writes nothing)."""
        if not self.pause.due():
            return False
        try:
            self.store.facts.set(WRITE_PROBE, time.time())
        except Exception as exc:
            self._store_failed("probe", exc)
            return False
        self._store_ok()
        return True

    def run(self, task: Task) -> TaskState:
        """Run one claimed task; returns its new state."""
        reg = self.registry.get(task.kind)
        started = time.monotonic()
        with self._lock:
            batched = task.id in self._running  # claimed along by a batch: said then
            self._running[task.id] = task
        try:
            if not batched:
                log.info("task.started", task_id=task.id, kind=task.kind, key=task.key,
                         attempt=task.attempts)
            try:
                if reg is None:
                    raise Fatal(f"no handler registered for task kind {task.kind!r}")
                if task.work is None:  # never a default in place of what is missing
                    raise Fatal(f"{task.kind} task {task.key}: {task.malformed}")
                outcome: str | Exception = reg.handler(task.work, task)
            except Exception as exc:
                outcome = exc
            return self._finish(task, outcome, started)
        finally:
            with self._lock:
                self._running.pop(task.id, None)
                self._started.pop(task.id, None)

    # -- batches: a handler that takes more tasks of its kind along (uploads, retrieves) --
    def claim_more(self, kind: str, limit: int) -> list[Task]:
        """Up to `limit` more due tasks of `kind` for the handler running now. Their leases
        are renewed with the pool's own; each ends by `run` (a handler of its own),
        `finish` (the batch's outcome for it) or `give_back`; `stop` hands back the rest."""
        if limit < 1 or self.stopping.is_set():
            return []
        got = self.store.tasks.claim_more(kind, self.owner, self.cfg.lease, limit)
        now = time.monotonic()
        with self._lock:
            for t in got:
                self._running[t.id] = t
                self._started[t.id] = now
        for t in got:
            log.info("task.started", task_id=t.id, kind=t.kind, key=t.key, attempt=t.attempts,
                     batched=True)
        return got

    def finish(self, task: Task, outcome: str | Exception) -> TaskState | None:
        """Record the outcome of a task taken by `claim_more` as `run` records its own: a
        result string, or the exception its handler would have raised. None: it had ended."""
        with self._lock:
            if self._running.pop(task.id, None) is None:
                return None
            started = self._started.pop(task.id, time.monotonic())
        return self._finish(task, outcome, started)

    def give_back(self, task: Task, why: str) -> bool:
        """A task taken by `claim_more` goes back untouched (the attempt does not count):
        due again at once, for any worker. False: it had ended."""
        with self._lock:
            if self._running.pop(task.id, None) is None:
                return False
            self._started.pop(task.id, None)
        try:
            self.store.tasks.release(task.id, self.owner)
        except Exception as exc:  # its lease ends by itself and the task is reclaimed
            log.error("task.release_failed", task_id=task.id, error=describe(exc))
            return True
        log.info("task.handed_back", task_id=task.id, kind=task.kind, key=task.key,
                 reason=why)
        return True

    def _finish(self, task: Task, outcome: str | Exception, started: float) -> TaskState:
        if isinstance(outcome, Fatal):
            return self._failed(task, str(outcome), dead=True, started=started)
        if isinstance(outcome, WaitFor):
            return self._failed(task, str(outcome), after=outcome.after, started=started,
                                waiting=outcome.cause)
        if isinstance(outcome, RetryLater):
            return self._failed(task, str(outcome), after=outcome.after, started=started)
        if isinstance(outcome, Exception):
            if self.pause.is_store_problem(outcome):  # not the task's fault: no attempt used
                return self._failed(task, f"state store unusable: {describe(outcome)}",
                                    started=started, waiting="state store")
            log.error("task.crashed", task_id=task.id, kind=task.kind,
                      error=describe(outcome), where=_where(outcome))
            return self._failed(task, f"internal error: {describe(outcome)}", started=started)
        self._record(task, lambda: self.store.tasks.complete(task.id, self.owner, outcome))
        log.info("task.done", task_id=task.id, kind=task.kind, key=task.key,
                 seconds=round(time.monotonic() - started, 3), result=outcome)
        return TaskState.DONE

    def _failed(self, task: Task, error: str, *, started: float, dead: bool = False,
                after: float | None = None, waiting: str | None = None) -> TaskState:
        reg = self.registry.get(task.kind)
        limit = task.max_attempts or (reg.max_attempts if reg else None) or self.cfg.max_attempts
        retry_in = None
        if waiting is not None:  # waits for something else to recover: never exhausts
            retry_in = after if after is not None else backoff.delay(
                min(task.attempts, 30), self.cfg.backoff_base, self.cfg.backoff_max)
        elif not dead and task.attempts < limit:
            retry_in = after if after is not None else backoff.delay(
                task.attempts, self.cfg.backoff_base, self.cfg.backoff_max)
        state = self._record(task, lambda: self.store.tasks.fail(
            task.id, self.owner, error, retry_in=retry_in, dead=dead,
            refund=waiting is not None, waiting=waiting))
        fields = dict(task_id=task.id, kind=task.kind, key=task.key, attempt=task.attempts,
                      max_attempts=limit, retry_in=None if retry_in is None else round(retry_in, 1),
                      error=error, seconds=round(time.monotonic() - started, 3))
        if waiting is not None:
            log.warning("task.waiting", waiting_for=waiting, **fields)
        elif state is TaskState.DEAD:
            log.error("task.dead", **fields)
        else:
            log.warning("task.retry", **fields)
        return state if isinstance(state, TaskState) else TaskState.PENDING

    def _record(self, task: Task, write: Callable[[], object]) -> object:
        """Write a task's outcome; while the store refuses writes, pause and try again
        (the lease is renewed meanwhile, so nobody else takes the task)."""
        while True:
            try:
                out = write()
            except Exception as exc:
                self._store_failed("record", exc, task)
                if self.stopping.is_set():
                    log.error("task.outcome_lost", task_id=task.id, kind=task.kind,
                              reason="stopping while the state store refuses writes; the "
                              "task runs again after its lease ends")
                    return None
                self.stopping.wait(self.pause.delay() or 1.0)
                continue
            self._store_ok()
            return out

    def _store_failed(self, what: str, exc: BaseException, task: Task | None = None) -> None:
        if self.pause.hold(exc):
            log.error("tasks.paused", reason=self.pause.reason(), during=what,
                      task_id=task.id if task else None,
                      effect="no task is claimed until the state store can be written")
        else:
            log.debug("tasks.store_still_failing", during=what, error=describe(exc))

    def _store_ok(self) -> None:
        was = self.pause.clear()
        if was is not None:
            log.info("tasks.resumed", paused_seconds=round(was, 1))
            self.wake()

    def _heartbeat(self) -> None:
        """Renew the leases of running tasks; reclaim leases that expired elsewhere;
        restart a worker thread that died anyway."""
        period = max(1.0, min(self.cfg.lease / 3, 5.0))
        while not self.stopping.wait(period):
            try:
                self._revive()
                with self._lock:
                    ids = list(self._running)
                self.store.tasks.renew(ids, self.owner, self.cfg.lease)
                n = self.store.tasks.reclaim_expired()
                if n:
                    log.warning("tasks.reclaimed", count=n, reason="lease expired")
            except Exception as exc:
                log.error("tasks.heartbeat_failed", error=describe(exc))

    def _revive(self) -> None:
        for i, w in enumerate(self._workers):
            if not w.thread.is_alive() and not self.stopping.is_set():
                log.error("task.worker_died", worker=w.thread.name,
                          effect="started again")
                self._workers[i] = self._spawn(w.lane, w.kinds, w.index)


def _where(exc: BaseException) -> list[str]:
    lines = traceback.format_exception(exc, limit=-3)
    return [line.strip() for line in "".join(lines).strip().splitlines()[-4:]]
