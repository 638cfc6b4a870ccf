"""Two `dicomgate run` nodes against one PostgreSQL: a node killed with studies only in
its spool, the other retrieves them again; back, the killed node drops its stale copies."""

from __future__ import annotations

import os
import signal

from ha_harness import delivered, report_pushes, sql, wait
from ha_harness import load as _load

from dicomgate.state.nodes import NODE_TIMEOUT


def test_a_node_killed_with_files_in_its_spool_the_other_retrieves_them(nodes, pacs, cloud,
                                                                       api, view_db):
    """...and when the killed node returns, it drops its stale copies of those studies."""
    a = nodes["gw-a"].start()

    def a_holds_undelivered() -> bool:
        return bool(sql(a.url, "SELECT 1 FROM instances WHERE node='gw-a' AND state IN "
                               "('received', 'uploaded') LIMIT 1"))
    # The cloud hangs meanwhile, so that gw-a surely holds studies it has not delivered
    # (a small backlog otherwise passes through its spool between two looks).
    assert cloud.proc is not None
    os.kill(cloud.proc.pid, signal.SIGSTOP)
    try:
        exams = _load(pacs, view_db, 12)
        wait(a_holds_undelivered, 60, "gw-a to hold files not yet delivered", a)
        a.kill()  # power off with studies only in its spool
    finally:
        os.kill(cloud.proc.pid, signal.SIGCONT)
    left = {r[0] for r in sql(a.url, "SELECT DISTINCT study_uid FROM instances WHERE "
                                     "node='gw-a' AND state IN ('received', 'uploaded')")}
    assert left
    b = nodes["gw-b"].start()
    wait(lambda: len(delivered(cloud, api, exams)) == len(exams), NODE_TIMEOUT + 240,
         "gw-b to deliver everything, gw-a's unfinished studies retrieved again", b)
    taken = b.events("node.work_taken_over")
    assert taken and taken[0]["dead_node"] == "gw-a" and taken[0]["studies_retrieved_again"]

    def b_delivered_them() -> bool:  # from b's own spool (the cloud may hold a's uploads
        # of them already: b's delivery of the same instances can finish a moment later)
        rows = set(sql(b.url, "SELECT DISTINCT node, state FROM instances WHERE "
                              "study_uid = ANY(%s)", (list(left),)))
        return ("gw-b", "delivered") in rows and {s for _n, s in rows} == {"delivered"}
    wait(b_delivered_them, 60, "gw-b's copies of gw-a's unfinished studies delivered", b)
    pushes = report_pushes(api)
    assert sum(pushes.values()) <= len(pushes) + 2, pushes
    # gw-a comes back: its old copies of what gw-b re-retrieved are swept at start; the
    # files the store still records on gw-a (delivered by gw-a itself) stay until retention
    moved = {r[0] for r in sql(a.url, "SELECT sop_uid FROM instances WHERE node='gw-b'")}
    ours = {r[0] for r in sql(a.url, "SELECT sop_uid FROM instances WHERE node='gw-a' AND "
                                     "state='delivered'")}
    stale = a.spool_files() & moved
    assert stale, "gw-a's spool should still hold old copies before it returns"
    a.start()
    wait(lambda: not a.spool_files() & moved, 30, "gw-a to drop the copies gw-b holds", a)
    assert a.spool_files() >= ours, "gw-a's own delivered files must stay"
    assert a.events("node.spool_swept")[0]["files_removed"] >= len(stale)
