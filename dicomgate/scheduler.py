"""Periodic jobs on APScheduler; each run's start, end and outcome go to the state store."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from .state import Store

log = structlog.get_logger("dicomgate.scheduler")


class Scheduler:
    def __init__(self, store: Store):
        self.store = store
        self._sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                        "misfire_grace_time": None})
        self._jobs: dict[str, tuple[float, Callable[[], object]]] = {}
        # Nodes sharing a store: whether a job may run here now (the leader's); None: always
        self.gate: Callable[[str], bool] | None = None
        self._running: set[str] = set()  # jobs running now (a stopping leader waits for them)

    def every(self, name: str, seconds: float, func: Callable[[], object],
              first_in: float = 0.0) -> None:
        """Run `func` every `seconds` (never two at once); its return value is the detail."""
        if name in self._jobs:
            raise ValueError(f"job {name!r} is already scheduled")
        self._jobs[name] = (seconds, func)
        self._sched.add_job(self._run, "interval", seconds=seconds, args=(name,), id=name,
                            name=name, next_run_time=_in(first_in))

    def run_now(self, name: str) -> None:
        self._run(name)

    def kick(self) -> None:
        """Run every job soon (this node just became the leader: the view poll must not
        wait out a whole interval after the old leader died)."""
        for name in self._jobs:
            try:
                self._sched.modify_job(name, next_run_time=_in(0.5))
            except Exception:  # not started yet: the first runs are near anyway
                pass

    def _run(self, name: str) -> None:
        if self.gate is not None and not self.gate(name):
            return  # another node leads: it runs this job
        _, func = self._jobs[name]
        started = time.monotonic()
        self._note(name, lambda: self.store.jobs.started(name))
        self._running.add(name)
        try:
            detail = func()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._note(name, lambda: self.store.jobs.finished(name, False, error))
            log.error("job.failed", job=name, error=error,
                      seconds=round(time.monotonic() - started, 3))
            return
        finally:
            self._running.discard(name)
        self._note(name, lambda: self.store.jobs.finished(
            name, True, "" if detail is None else str(detail)))
        log.debug("job.done", job=name, seconds=round(time.monotonic() - started, 3))

    @staticmethod
    def _note(name: str, write: Callable[[], None]) -> None:
        """A job's bookkeeping must not fail the job (a full disk refuses the write)."""
        try:
            write()
        except Exception as exc:
            log.warning("job.not_recorded", job=name, error=f"{type(exc).__name__}: {exc}")

    def running(self) -> set[str]:
        """The jobs running at this moment."""
        return set(self._running)

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def alive(self) -> bool:
        return bool(self._sched.running)

    def start(self) -> None:
        self._sched.start()

    def stop(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)


def _in(seconds: float):
    from datetime import datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)
