"""The durable task queue: idempotency, backoff, dead tasks, leases, crash recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomgate.config import TasksConfig
from dicomgate.state import Store
from dicomgate.state.kinds import Retrieve, Upload
from dicomgate.tasks import Fatal, Registry, RetryLater, WorkerPool, backoff
from tests.support.engines import open_store


@pytest.fixture
def store(tmp_path) -> Store:
    s = open_store(tmp_path / "state")
    yield s
    s.close()


def pool_for(store: Store, handlers: dict, **cfg) -> WorkerPool:
    reg = Registry()
    for kind, fn in handlers.items():
        reg.register(kind, fn)
    return WorkerPool(store, reg, TasksConfig(**cfg), owner="test-owner")


def wait_due(store: Store, task_id: int, timeout: float = 5.0) -> None:
    task = store.tasks.get(task_id)
    time.sleep(max(0.0, min(timeout, task.run_after - time.time())) + 0.01)


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(1)
    delays = [backoff.delay(n, base=10, maximum=3600, rng=rng) for n in range(1, 12)]
    assert all(later > earlier for earlier, later in zip(delays[:6], delays[1:7], strict=True))
    assert max(delays) <= 3600 and delays[-1] >= 3600 * 0.8


def test_failures_back_off_then_go_dead(store):
    calls = []

    def flaky(work, task):
        calls.append(time.time())
        raise RetryLater("PACS not answering")

    pool = pool_for(store, {"upload": flaky}, backoff_base=0.05, backoff_max=10, max_attempts=4)
    tid = store.tasks.enqueue(Upload("1.2")).id
    gaps = []
    for _ in range(4):
        wait_due(store, tid)
        assert pool.drain() == 1
        t = store.tasks.get(tid)
        gaps.append(t.run_after - t.updated_at)
    t = store.tasks.get(tid)
    assert t.state == "dead" and t.attempts == 4 and t.last_error == "PACS not answering"
    assert gaps[0] < gaps[1] < gaps[2]  # exponential: each wait longer than the one before
    assert len(calls) == 4


def test_fatal_is_dead_at_once_and_retry_revives(store):
    def bad(work, task):
        raise Fatal("destination AE unknown: add DICOMGATE on the PACS")

    pool = pool_for(store, {"retrieve": bad})
    tid = store.tasks.enqueue(Retrieve(study_uid="1.2")).id
    pool.drain()
    assert store.tasks.get(tid).state == "dead"
    assert store.tasks.retry(tid)
    t = store.tasks.get(tid)
    assert t.state == "pending" and t.attempts == 0


def test_crash_in_handler_is_retried_not_fatal(store):
    def crashy(work, task):
        raise KeyError("oops")

    pool = pool_for(store, {"upload": crashy}, backoff_base=60)
    tid = store.tasks.enqueue(Upload("1.2")).id
    pool.drain()
    t = store.tasks.get(tid)
    assert t.state == "pending" and "KeyError" in t.last_error


def test_reenqueue_while_running_runs_again(store):
    seen = []

    def h(work: Retrieve, task):
        seen.append(work.reason)
        if len(seen) == 1:  # more work arrives while we are busy
            store.tasks.enqueue(Retrieve(study_uid="1.2", reason="2"), reopen=True)
        return "ok"

    pool = pool_for(store, {"retrieve": h})
    tid = store.tasks.enqueue(Retrieve(study_uid="1.2", reason="1")).id
    pool.drain()
    assert seen == ["1", "2"] and store.tasks.get(tid).state == "done"


def test_task_of_killed_worker_is_done_exactly_once_after_restart(tmp_path):
    state_dir = tmp_path / "state"
    store = open_store(state_dir)
    tid = store.tasks.enqueue(Upload("job-1")).id
    marks = tmp_path / "marks.txt"
    script = Path(__file__).with_name("queue_worker.py")
    first = subprocess.Popen([sys.executable, str(script), str(state_dir), str(marks)])
    deadline = time.monotonic() + 30
    while not (marks.exists() and "start" in marks.read_text()):
        assert time.monotonic() < deadline, "worker never started the task"
        assert first.poll() is None, "worker exited early"
        time.sleep(0.05)
    assert store.tasks.get(tid).state == "running"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    second = subprocess.run([sys.executable, str(script), str(state_dir), str(marks)],
                            timeout=60)
    assert second.returncode == 0
    lines = marks.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("done")] == ["done study:job-1"]
    t = store.tasks.get(tid)
    assert t.state == "done" and t.attempts == 2
    store.close()


