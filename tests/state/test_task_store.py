"""The task table (dicomgate/state/tasks.py): idempotent enqueue, leases, counts, and the
wake-ups that tell workers (in this process or the daemon) that work was committed."""

from __future__ import annotations

import subprocess
import sys

from dicomgate.state.kinds import PushReport, Retrieve, Upload
from tests.support import wait_until


def test_enqueue_is_idempotent_by_kind_and_key(store):
    a = store.tasks.enqueue(Retrieve(study_uid="1.2.3"))
    b = store.tasks.enqueue(Retrieve(study_uid="1.2.3"))
    c = store.tasks.enqueue(Upload("1.2.3"))
    assert a.created and not b.created and a.id == b.id
    assert c.created and c.id != a.id
    assert len(store.tasks.list(kind="retrieve")) == 1


def test_state_files_are_private(store, tmp_path, engine):
    state = tmp_path / "state"
    assert state.stat().st_mode & 0o777 == 0o700  # the node's own spool lives here
    if engine == "sqlite":
        assert (state / "state.db").stat().st_mode & 0o777 == 0o600


def test_expired_lease_is_reclaimed_and_late_completion_ignored(store):
    tid = store.tasks.enqueue(PushReport(1, 1)).id
    first = store.tasks.claim(["push_report"], "worker-a", lease=0.05)
    assert first.id == tid
    assert store.tasks.claim(["push_report"], "worker-b", lease=60) is None  # not twice
    wait_until(lambda: store.tasks.reclaim_expired() == 1, timeout=5,
               what="the 0.05 s lease to expire and be reclaimed")
    second = store.tasks.claim(["push_report"], "worker-b", lease=60)
    assert second.id == tid and second.attempts == 2
    assert not store.tasks.complete(tid, "worker-a")  # the old owner lost it
    assert store.tasks.complete(tid, "worker-b")


def test_cancel_and_counts(store):
    a = store.tasks.enqueue(Retrieve(study_uid="a")).id
    store.tasks.enqueue(Retrieve(study_uid="b"))
    assert store.tasks.cancel(a, "exam refunded")
    assert store.tasks.counts() == {"retrieve": {"cancelled": 1, "pending": 1}}


def test_listeners_hear_of_new_tasks_only_once_committed(store):
    heard = []
    store.tasks.listeners.append(heard.append)
    with store.transaction():
        store.tasks.enqueue(Upload("1"))
        assert heard == []  # not visible to other connections yet
    assert heard == ["upload"]
    try:
        with store.transaction():
            store.tasks.enqueue(Upload("2"))
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


def test_queue_by_kind_groups_waiting_work_by_reason(store):
    ids = [store.tasks.enqueue(Retrieve(study_uid=f"1.2.{n}")).id for n in range(4)]
    store.tasks.enqueue(Upload("1.2.9"))
    for reason in ("PACS", "PACS", "disk space"):
        t = store.tasks.claim(["retrieve"], "w", 60)
        store.tasks.fail(t.id, "w", "waits", retry_in=600, refund=True, waiting=reason)
    running = store.tasks.claim(["retrieve"], "w", 60)
    assert running.id == ids[3]
    q = store.tasks.queue_by_kind()
    assert q["retrieve"] == {"running": 1, "due": 0, "later": 3,
                             "waiting": {"PACS": 2, "disk space": 1}}
    assert q["upload"] == {"running": 0, "due": 1, "later": 0, "waiting": {}}
    # a plain retry of a task that was waiting is no longer waiting for anything
    store.tasks.complete(running.id, "w")
    store.tasks.make_due((Retrieve.kind,))  # `pacs.up` wakes them
    woken = store.tasks.claim(["retrieve"], "w", 60)
    assert woken.waiting_for in ("PACS", "disk space")
    store.tasks.fail(woken.id, "w", "timeout", retry_in=600)
    assert store.tasks.get(woken.id).waiting_for is None
    assert sum(store.tasks.queue_by_kind()["retrieve"]["waiting"].values()) == 2
