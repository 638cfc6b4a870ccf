"""Nodes sharing one PostgreSQL store (state/nodes.py, tasks.claim): claims never collide,
one leader at a time, an upload runs only where its files are, a dead node's work moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dicomgate.state import Store
from dicomgate.state.kinds import PushReport, Upload
from dicomgate.state.nodes import NODE_TIMEOUT
from tests.support.stores import record_instance, two_nodes


@pytest.fixture
def two(pg_server, tmp_path) -> Iterator[tuple[Store, Store]]:
    with two_nodes(pg_server.new_database(), tmp_path) as pair:
        yield pair



def test_concurrent_claims_from_two_nodes_never_take_one_task_twice(two):
    a, b = two
    for i in range(200):
        a.tasks.enqueue(PushReport(i, 1))
    got: dict[str, list[int]] = {"a": [], "b": []}

    def drain(store: Store, name: str) -> None:
        for _ in range(400):  # bounded
            t = store.tasks.claim(["push_report"], f"gw-{name}:1:1", lease=60)
            if t is None:
                return
            got[name].append(t.id)

    threads = [threading.Thread(target=drain, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got["a"]) + len(got["b"]) == 200
    assert not set(got["a"]) & set(got["b"])
    assert got["a"] and got["b"]  # both nodes claimed: SKIP LOCKED, no waiting in line


def test_a_batch_claim_leaves_the_other_live_nodes_their_share(two):
    a, b = two
    for i in range(12):
        a.tasks.enqueue(PushReport(i, 1))
    # alone, a node takes all it asks for
    a.nodes.beat("gw-a", "gw-a:1:1", 0, {})
    alone = a.tasks.claim_more("push_report", "gw-a:1:1", lease=60, limit=16)
    assert len(alone) == 12
    for t in alone:
        a.tasks.fail(t.id, "gw-a:1:1", "again", retry_in=0, refund=True)
    # two live nodes: a node takes up to its half of the kind's work, counting what it runs
    b.nodes.beat("gw-b", "gw-b:1:1", 0, {})
    head = a.tasks.claim(["push_report"], "gw-a:1:1", lease=60)
    assert head is not None
    more = a.tasks.claim_more("push_report", "gw-a:1:1", lease=60, limit=16)
    assert len(more) == 5
    assert a.tasks.claim_more("push_report", "gw-a:1:1", lease=60, limit=16) == []
    theirs = b.tasks.claim_more("push_report", "gw-b:1:1", lease=60, limit=16)
    assert len(theirs) == 6
    assert not {t.id for t in theirs} & {head.id, *(t.id for t in more)}


def test_one_leader_and_the_lease_moves_when_it_lapses(two):
    a, b = two
    assert a.nodes.lead("scheduler", "gw-a", "gw-a:1:1", ttl=0.5)
    assert not b.nodes.lead("scheduler", "gw-b", "gw-b:1:1", ttl=0.5)
    assert a.nodes.lead("scheduler", "gw-a", "gw-a:1:1", ttl=0.5)  # renewal
    assert a.nodes.holder("scheduler") == "gw-a"
    time.sleep(0.6)
    assert b.nodes.lead("scheduler", "gw-b", "gw-b:1:1", ttl=0.5)
    assert not a.nodes.lead("scheduler", "gw-a", "gw-a:1:1", ttl=0.5)


def test_an_upload_is_claimed_only_by_the_node_holding_its_files(two):
    a, b = two
    record_instance(a, "1.1", "9.1")
    b.tasks.enqueue(Upload("9.1"))  # queued by b (e.g. a catch-up job), files on a
    assert b.tasks.claim(["upload"], "gw-b:1:1", lease=60) is None
    t = a.tasks.claim(["upload"], "gw-a:1:1", lease=60)
    assert t is not None and t.node == "gw-a"


def test_a_dead_nodes_tasks_and_undelivered_studies_move_to_a_live_node(two):
    a, b = two
    a.nodes.beat("gw-a", "gw-a:1:1", 0, {})
    b.nodes.beat("gw-b", "gw-b:1:1", 0, {})
    record_instance(a, "1.1", "9.1")
    a.tasks.enqueue(Upload("9.1"))
    a.tasks.enqueue(PushReport(1, 1))
    running = a.tasks.claim(["push_report"], "gw-a:1:1", lease=3600)
    assert b.nodes.adopt("gw-b") == []  # a is alive: nothing moves
    with a.db.tx() as c:  # a's last beat, NODE_TIMEOUT ago
        c.execute("UPDATE nodes SET last_seen=? WHERE name='gw-a'",
                  (time.time() - NODE_TIMEOUT - 1,))
    moved = b.nodes.adopt("gw-b")
    assert [(m.node, m.studies, m.tasks) for m in moved] == [("gw-a", ("9.1",), 1)]
    assert b.tasks.get(running.id).state == "pending"  # long before its 1 h lease ends
    assert b.instances.of_study("9.1") == []  # to be retrieved again, into b's spool
    assert b.tasks.find("upload", "study:9.1").node is None
    assert not [n for n in b.nodes.all() if n.name == "gw-a" and n.alive()]


def test_every_repository_write_path_runs_on_both_engines(store):
    """The statements the dialect seam must carry (executemany, lastrowid, GREATEST,
    ON CONFLICT, LIKE with ESCAPE) through the repositories, not through SQL of the test."""
    record_instance(store, "1.1", "9.1")
    record_instance(store, "1.2", "9.1")
    store.delivery.mark_sending(["1.1", "1.2"])
    t = store.tasks.enqueue(Upload("9.1"))
    claimed = store.tasks.claim(["upload"], "gw-test:1:1", lease=60)
    assert claimed is not None and claimed.id == t.id
    assert store.tasks.fail(t.id, "gw-test:1:1", "peer down", retry_in=0.0, refund=True,
                            waiting="PACS") == "pending"
    assert store.tasks.get(t.id).attempts == 0
    store.audit.record("cli:test", "tasks.retry", subject="x%_y", outcome="ok")
    assert store.console.audit(text="x%_y")
    assert store.exams.active_task_ids(1, None, ("retrieve",)) == []  # a NULL parameter


def test_connections_of_ended_threads_are_closed(two):
    """Threads come and go (one per DICOM association): their connections must not pile
    up until PostgreSQL's max_connections refuses every node."""
    a, _ = two

    def once() -> None:
        a.tasks.counts()

    for _ in range(30):
        t = threading.Thread(target=once)
        t.start()
        t.join()
    n = a.db.one("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND application_name = 'dicomgate'")[0]
    assert n <= 4, n  # this thread's, the last worker's, b's: not 30


def test_a_restarted_node_reclaims_only_its_own_orphans(two):
    a, b = two
    a.tasks.enqueue(PushReport(1, 1))
    b.tasks.enqueue(PushReport(2, 1))
    ta = a.tasks.claim(["push_report"], "gw-a:100:1", lease=3600)  # a's previous process
    tb = b.tasks.claim(["push_report"], "gw-b:200:1", lease=3600)  # b, alive and working
    assert a.tasks.reclaim_foreign("gw-a:101:2") == 1  # a restarted as a new process
    assert a.tasks.get(ta.id).state == "pending"
    assert a.tasks.get(tb.id).state == "running"  # never a live node's task


def test_a_clean_stop_hands_the_leader_lease_over_at_once(two):
    a, b = two
    assert a.nodes.lead("scheduler", "gw-a", "gw-a:1:1")
    assert not b.nodes.lead("scheduler", "gw-b", "gw-b:1:1")
    a.nodes.left("gw-a:1:1")
    assert b.nodes.lead("scheduler", "gw-b", "gw-b:1:1")


def test_every_repository_read_path_runs_on_both_engines(store):
    """The console's, status's, the shim's and upstream's reads through the dialect seam."""
    record_instance(store, "1.1", "9.1")
    store.delivery.log_send("push_report", "exam:1", "k1", 200, "ok", None)
    sid = store.sessions.open("H1", "doc", {}, None, 60.0, {})
    assert store.sessions.active("H1", "doc")["id"] == sid and store.sessions.count_open() == 1
    assert len(store.sessions.salt()) == 32
    store.qr.issued("H1", "A1", "CT")
    store.qr.issued("H1", "A1", "CT")
    assert store.qr.of([("H1", "A1")])[("H1", "A1")]["count"] == 2
    assert store.console.search_exams(accession="A_1%", day_from="2026-01-01",
                                      day_to="2026-12-31", changed_since=0.0) == []
    assert store.console.counts() is not None and store.console.dead_tasks() == []
    assert store.console.exam_instances(["9.1"])[0]["sop_uid"] == "1.1"
    assert store.console.studies(["9.1"]) and store.console.sends(["exam:1"])
    assert store.console.rejected_instances() == [] and store.console.audit_actions()
    assert store.overview.instances_by_state() and store.overview.spool_bytes() == 10
    store.overview.task_latency(), store.overview.oldest_pending(), store.overview.job_runs()
    backlog = store.delivery.backlog()
    assert backlog["backlog_instances"] == 1 and isinstance(backlog["backlog_bytes"], int)
    assert store.delivery.studies_awaiting_upload() == ["9.1"]
    assert store.delivery.purgeable(time.time()) == [] and store.tasks.queue_by_kind() == {}


def test_the_dialect_knows_every_table_keyed_by_id():
    """An INSERT returns the new id on PostgreSQL only for tables the seam lists: a new
    table keyed by `id` must be listed, or its `lastrowid` is None there."""
    import re

    from dicomgate.state.dialect import ID_TABLES
    from dicomgate.state.migrations import all_migrations

    keyed = {m for _, _, sql in all_migrations()
             for m in re.findall(r"CREATE TABLE (\w+) \(\s*id\s+INTEGER PRIMARY KEY", sql)}
    assert keyed == set(ID_TABLES)


def test_the_portal_association_record_runs_on_both_engines(store):
    """SQLite's instr and a parameter tested for NULL, through the dialect seam."""
    pa = store.portal_associations
    aid = pa.opened(calling_aet="HOSPPACS", peer="127.0.0.1:1", scp_pid=1)
    pa.counted(aid, study_uid="9.1", move_aet="DGATE", move_msg_id=None, stored=1)
    pa.counted(aid, study_uid=None, move_aet=None, move_msg_id=None, refused=1)
    got = pa.of_move("DGATE", 7, "9.1", since=0.0)
    assert [(a.id, a.stored, a.refused, a.study_uids) for a in got] == [(aid, 1, 1, "9.1")]


def test_a_task_enqueued_on_one_node_wakes_the_others_at_commit(two):
    a, b = two
    heard = threading.Event()
    assert b.db.listen(heard.set)
    deadline = time.monotonic() + 10
    while not heard.is_set() and time.monotonic() < deadline:  # its first look on connecting
        time.sleep(0.05)
    heard.clear()
    with a.transaction():
        a.tasks.enqueue(PushReport(1, 1))
        assert not heard.wait(0.5)  # not before the commit: nothing to claim yet
    assert heard.wait(5)
