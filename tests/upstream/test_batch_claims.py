"""Claiming several upload tasks at once (state/tasks.py `claim_more`, `take_reruns`) on
SQLite and on a shared PostgreSQL store, and the batch's own lease keeping
(the worker pool, through upstream/batch_claims.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dicomgate.config import TasksConfig
from dicomgate.state import PgLocation, Store
from dicomgate.state.kinds import PushReport, Upload
from dicomgate.tasks import Registry, RetryLater, WaitFor, WorkerPool
from dicomgate.upstream.batch_claims import BatchClaims
from tests.support import engines
from tests.support.pg_server import PgServer
from tests.support.stores import drain_from_both, record_instance, two_nodes


@pytest.fixture(scope="module")
def pg_server() -> PgServer:
    return engines.pg_server()  # the one the suite's other tests use on PostgreSQL


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(tmp_path / "state" / "state.db")
    else:
        server = request.getfixturevalue("pg_server")
        s = Store(PgLocation(server.new_database(), tmp_path / "state", node="gw-a"))
    yield s
    s.close()


@pytest.fixture
def two(pg_server, tmp_path) -> Iterator[tuple[Store, Store]]:
    with two_nodes(pg_server.new_database(), tmp_path) as pair:
        yield pair



def _owner(store: Store) -> str:
    return f"{store.db.node or 'host'}:1:1"


def test_claim_more_takes_due_tasks_of_the_kind_oldest_first(store):
    for i in range(5):
        record_instance(store, f"1.{i}", f"9.{i}")
        store.tasks.enqueue(Upload(f"9.{i}"))
    store.tasks.enqueue(Upload("9.later"), delay=3600)
    store.tasks.enqueue(PushReport(1, 1))
    owner = _owner(store)
    first = store.tasks.claim(["upload"], owner, lease=60)
    more = store.tasks.claim_more("upload", owner, lease=60, limit=3)
    assert [t.key for t in more] == ["study:9.1", "study:9.2", "study:9.3"]
    assert first.key == "study:9.0"
    for t in more:
        assert t.state == "running" and t.lease_owner == owner and t.attempts == 1
        assert t.lease_until > time.time() + 50
    rest = store.tasks.claim_more("upload", owner, lease=60, limit=10)
    assert [t.key for t in rest] == ["study:9.4"]  # neither the later one nor a push
    assert store.tasks.claim_more("upload", owner, lease=60, limit=10) == []
    assert store.tasks.claim_more("upload", owner, lease=60, limit=0) == []


def test_claim_more_on_two_nodes_takes_only_uploads_whose_files_are_here(two):
    a, b = two
    for i in range(4):
        record_instance(a if i % 2 == 0 else b, f"1.{i}", f"9.{i}")
        a.tasks.enqueue(Upload(f"9.{i}"))
    got_b = b.tasks.claim_more("upload", "gw-b:1:1", lease=60, limit=10)
    assert sorted(t.key for t in got_b) == ["study:9.1", "study:9.3"]
    got_a = a.tasks.claim_more("upload", "gw-a:1:1", lease=60, limit=10)
    assert sorted(t.key for t in got_a) == ["study:9.0", "study:9.2"]


def test_concurrent_batch_claims_from_two_nodes_never_take_one_task_twice(two):
    a, b = two
    for i in range(120):
        a.tasks.enqueue(Upload(f"8.{i}"))  # no files anywhere yet: either node may run it
    got = drain_from_both(a, b, "upload", 7)
    assert len(got["a"]) + len(got["b"]) == 120
    assert not set(got["a"]) & set(got["b"])


def test_take_reruns_clears_only_what_was_asked_before(store):
    owner = _owner(store)
    for i in range(2):
        store.tasks.enqueue(Upload(f"7.{i}"))
    t0 = store.tasks.claim(["upload"], owner, lease=60)
    t1 = store.tasks.claim(["upload"], owner, lease=60)
    assert store.tasks.take_reruns([t0.id, t1.id], owner) == []
    store.tasks.enqueue(Upload("7.0"), reopen=True)  # an instance landed meanwhile
    assert store.tasks.take_reruns([t0.id, t1.id], "someone-else:1:1") == []
    assert store.tasks.take_reruns([t0.id, t1.id], owner) == [t0.id]
    assert store.tasks.complete(t0.id, owner, "ok")
    assert store.tasks.get(t0.id).state == "done"  # the mark was taken: not run again
    store.tasks.enqueue(Upload("7.1"), reopen=True)  # after the handler's last look
    assert store.tasks.complete(t1.id, owner, "ok")
    assert store.tasks.get(t1.id).state == "pending"  # so it runs again


def test_a_batch_keeps_its_leases_and_ends_each_task_on_its_own(store):
    """The pool renews the leases of what a batch took with its own, and records each
    one's outcome as it records a task it runs: a wait gives its attempt back."""
    cfg = TasksConfig(lease=2.0, backoff_base=1.0, backoff_max=5.0)
    owner = _owner(store)
    for i in range(5):
        store.tasks.enqueue(Upload(f"6.{i}"))
    first = store.tasks.claim(["upload"], owner, lease=cfg.lease)  # not the pool's: no renewal
    pool = WorkerPool(store, Registry(), cfg, owner)  # nothing registered: no worker threads
    pool.start()  # its lease keeper
    claims = BatchClaims(pool)
    done, retry, wait, left = claims.claim(4)
    try:
        time.sleep(3.5)  # longer than the lease: only renewal keeps them
        assert store.tasks.get(first.id).state == "pending"  # expired, taken back
        assert {store.tasks.get(t.id).state for t in (done, retry, wait, left)} == {"running"}
        claims.finish(done, "sent 3; study delivered")
        claims.finish(retry, RetryLater("cloud busy", after=30))
        claims.finish(wait, WaitFor("the cloud is unreachable", "cloud", after=30))
        claims.finish(done, "again")  # ended already: nothing more is written
    finally:
        claims.close()
        pool.stop(grace=0)
    d, r, w, lf = (store.tasks.get(t.id) for t in (done, retry, wait, left))
    assert d.state == "done" and d.result == "sent 3; study delivered"
    assert r.state == "pending" and r.last_error == "cloud busy" and r.run_after > time.time() + 20
    assert r.attempts == 1
    assert w.state == "pending" and w.attempts == 0  # a wait uses no attempt
    assert lf.state == "pending" and lf.attempts == 0 and lf.lease_owner is None  # handed back
