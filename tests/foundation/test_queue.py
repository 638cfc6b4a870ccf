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
from dicomgate.state.kinds import PushReport, Retrieve, Upload
from dicomgate.tasks import Fatal, Registry, RetryLater, WorkerPool, backoff


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "state" / "state.db")
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


def test_enqueue_is_idempotent_by_kind_and_key(store):
    a = store.tasks.enqueue(Retrieve(study_uid="1.2.3"))
    b = store.tasks.enqueue(Retrieve(study_uid="1.2.3"))
    c = store.tasks.enqueue(Upload("1.2.3"))
    assert a.created and not b.created and a.id == b.id
    assert c.created and c.id != a.id
    assert len(store.tasks.list(kind="retrieve")) == 1


def test_state_files_are_private(store, tmp_path):
    state = tmp_path / "state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "state.db").stat().st_mode & 0o777 == 0o600


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(1)
    delays = [backoff.delay(n, base=10, maximum=3600, rng=rng) for n in range(1, 12)]
    assert all(later > earlier for earlier, later in zip(delays[:6], delays[1:7], strict=True))
    assert max(delays) <= 3600 and delays[-1] >= 3600 * 0.8


def test_failures_back_off_then_go_dead(store):
    calls = []

    def flaky(task):
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
    def bad(task):
        raise Fatal("destination AE unknown: add DICOMGATE on the PACS")

    pool = pool_for(store, {"retrieve": bad})
    tid = store.tasks.enqueue(Retrieve(study_uid="1.2")).id
    pool.drain()
    assert store.tasks.get(tid).state == "dead"
    assert store.tasks.retry(tid)
    t = store.tasks.get(tid)
    assert t.state == "pending" and t.attempts == 0


def test_crash_in_handler_is_retried_not_fatal(store):
    def crashy(task):
        raise KeyError("oops")

    pool = pool_for(store, {"upload": crashy}, backoff_base=60)
    tid = store.tasks.enqueue(Upload("1.2")).id
    pool.drain()
    t = store.tasks.get(tid)
    assert t.state == "pending" and "KeyError" in t.last_error


def test_reenqueue_while_running_runs_again(store):
    seen = []

    def h(task):
        seen.append(task.payload["reason"])
        if len(seen) == 1:  # more work arrives while we are busy
            store.tasks.enqueue(Retrieve(study_uid="1.2", reason="2"), reopen=True)
        return "ok"

    pool = pool_for(store, {"retrieve": h})
    tid = store.tasks.enqueue(Retrieve(study_uid="1.2", reason="1")).id
    pool.drain()
    assert seen == ["1", "2"] and store.tasks.get(tid).state == "done"


def test_expired_lease_is_reclaimed_and_late_completion_ignored(store):
    tid = store.tasks.enqueue(PushReport(1, 1)).id
    first = store.tasks.claim(["push_report"], "worker-a", lease=0.05)
    assert first.id == tid
    assert store.tasks.claim(["push_report"], "worker-b", lease=60) is None  # not twice
    time.sleep(0.1)
    assert store.tasks.reclaim_expired() == 1
    second = store.tasks.claim(["push_report"], "worker-b", lease=60)
    assert second.id == tid and second.attempts == 2
    assert not store.tasks.complete(tid, "worker-a")  # the old owner lost it
    assert store.tasks.complete(tid, "worker-b")


def test_cancel_and_counts(store):
    a = store.tasks.enqueue(Retrieve(study_uid="a")).id
    store.tasks.enqueue(Retrieve(study_uid="b"))
    assert store.tasks.cancel(a, "exam refunded")
    assert store.tasks.counts() == {"retrieve": {"cancelled": 1, "pending": 1}}


def test_task_of_killed_worker_is_done_exactly_once_after_restart(tmp_path):
    state_dir = tmp_path / "state"
    store = Store(state_dir / "state.db")
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


def test_listeners_hear_of_new_tasks_only_once_committed(store):
    heard = []
    store.tasks.listeners.append(heard.append)
    with store.db.tx() as c:
        store.tasks.enqueue(Upload("1"), conn=c)
        assert heard == []  # not visible to other connections yet
    assert heard == ["upload"]
    try:
        with store.db.tx() as c:
            store.tasks.enqueue(Upload("2"), conn=c)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert heard == ["upload"] and store.tasks.find("upload", "study:2") is None
    store.tasks.enqueue(Upload("1"))  # already pending: nothing new to announce
    assert heard == ["upload"]


def test_a_task_committed_by_another_process_rings_the_daemon(store, tmp_path):
    import threading

    rung = threading.Event()
    assert store.tasks.doorbell.listen(rung.set)
    try:
        assert (tmp_path / "state" / "wake.sock").stat().st_mode & 0o777 == 0o600
        code = ("import sys; from pathlib import Path; from dicomgate.state import Store; "
                "from dicomgate.state.kinds import Retrieve; "
                "Store(Path(sys.argv[1])).tasks.enqueue(Retrieve(study_uid='9.9'))")
        subprocess.run([sys.executable, "-c", code, str(store.db.path)], check=True, timeout=60)
        assert rung.wait(10), "the other process's enqueue did not ring"
        rung.clear()
        store.tasks.enqueue(Retrieve(study_uid="9.8"))  # the listener's own process: no ring
        assert not rung.wait(0.5)
    finally:
        store.tasks.doorbell.close()
    assert not (tmp_path / "state" / "wake.sock").exists()
