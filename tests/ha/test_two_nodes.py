"""Two `dicomgate run` nodes against one PostgreSQL: they share the backlog (both complete
tasks, nothing delivered twice), either answers the PACS's HTTP calls, a node killed
mid-backlog leaves the other to finish everything, and polling moves with the leader."""

from __future__ import annotations

import subprocess
import threading
import time

from ha_harness import delivered, make_exams, report_pushes, sql, wait
from ha_harness import load as _load

from dicomgate.state.nodes import BEAT_EVERY, LEADER_TTL, NODE_TIMEOUT


def _reruns(*nodes) -> bool:
    """A task done on both nodes is legitimate only as a rerun (an upload reopened when
    more instances landed after it ran): never the same run twice."""
    starts: dict[int, int] = {}
    for n in nodes:
        for e in n.events("task.started"):
            starts[e["task_id"]] = starts.get(e["task_id"], 0) + 1
    return all(v >= 2 for v in starts.values())


def test_two_nodes_share_a_backlog_and_deliver_each_thing_once(nodes, pacs, cloud, api,
                                                              view_db):
    a, b = nodes["gw-a"].start(), nodes["gw-b"].start()
    exams = _load(pacs, view_db, 12)  # the backlog appears while both nodes run
    wait(lambda: len(delivered(cloud, api, exams)) == len(exams), 240,
         "every study in the cloud and every report pushed", a, b)
    assert all(n == 1 for n in report_pushes(api).values()), report_pushes(api)
    done = {e["task_id"] for n in (a, b) for e in n.events("task.done")}
    by_node = {n.name: {e["task_id"] for e in n.events("task.done")} for n in (a, b)}
    assert by_node["gw-a"] and by_node["gw-b"], by_node  # both nodes worked the backlog
    assert not by_node["gw-a"] & by_node["gw-b"] or _reruns(a, b), by_node
    time.sleep(BEAT_EVERY + 1)  # the counts reach the store with each beat
    by_name = {n["name"]: n for n in a.status()["nodes"]}
    assert set(by_name) == {"gw-a", "gw-b"} and all(n["alive"] for n in by_name.values())
    assert sum(n["leader"] for n in by_name.values()) == 1
    assert by_name["gw-a"]["tasks_done"] + by_name["gw-b"]["tasks_done"] >= len(done)
    assert {n["name"] for n in b.console_nodes()} == {"gw-a", "gw-b"}
    for node in (a, b):  # the PACS's HTTP calls: any node answers
        assert node.qrurl(exams[0])["code"] == 200
        assert node.health()["status"] == "ok"


def test_the_leader_killed_mid_backlog_the_other_finishes_and_polls(nodes, pacs, cloud,
                                                                   api, view_db):
    exams = _load(pacs, view_db, 8)
    a = nodes["gw-a"].start()
    wait(lambda: a.events("node.leading"), 30, "gw-a to lead", a)
    b = nodes["gw-b"].start()
    wait(lambda: delivered(cloud, api, exams), 120, "the first study delivered", a, b)
    answers: list[int] = []
    done = threading.Event()

    def print_reports() -> None:  # report printing asks the survivor throughout
        while not done.wait(0.5):
            try:
                answers.append(b.qrurl(exams[0])["code"])
            except Exception:
                answers.append(0)

    a.kill()
    killed = time.monotonic()
    printer = threading.Thread(target=print_reports)
    printer.start()
    try:
        wait(lambda: b.events("node.leading"), LEADER_TTL + BEAT_EVERY + 10,
             "gw-b to take the leader lease", b)
        took = time.monotonic() - killed
        later = _load(pacs, view_db, 2, start=100)  # only the new leader's poll finds these
        wait(lambda: len(delivered(cloud, api, exams + later)) == len(exams) + 2,
             NODE_TIMEOUT + 240, "gw-b to finish everything, old and new", b)
    finally:
        done.set()
        printer.join(15)
    assert answers and set(answers) == {200}, answers
    assert took <= LEADER_TTL + BEAT_EVERY + 5
    pushes = report_pushes(api)
    assert sum(pushes.values()) <= len(pushes) + 2, pushes  # at most the few in flight
    assert b.qrurl(later[0])["code"] == 200

    def a_dead_b_leads() -> bool:
        seen = {n["name"]: n for n in b.status()["nodes"]}
        return not seen["gw-a"]["alive"] and seen["gw-b"]["leader"]
    wait(a_dead_b_leads, NODE_TIMEOUT + 15, "status to show gw-a dead and gw-b leading", b)


def _storescu(node, tmp_path) -> str:
    """One instance sent to the node's Portal AET as the PACS would; dcmtk's verbose log."""
    _exam, data = make_exams(1, start=900)[0]
    f = tmp_path / "one.dcm"
    f.write_bytes(data[0])
    r = subprocess.run(["storescu", "-v", "-aet", "HOSPPACS", "-aec", node.aet, "127.0.0.1",
                        str(node.dicom_port), str(f)], capture_output=True, text=True,
                       timeout=60)
    return r.stdout + r.stderr


def test_postgresql_restarted_mid_work_loses_nothing(nodes, pg, pacs, cloud, api, view_db,
                                                     tmp_path):
    exams = _load(pacs, view_db, 8)
    a, b = nodes["gw-a"].start(), nodes["gw-b"].start()
    wait(lambda: delivered(cloud, api, exams), 120, "the first study delivered", a, b)
    pg.stop("fast")
    try:
        def says_store_down() -> bool:
            h = a.health()
            return h["status"] == "unhealthy" and "unreachable" in h["checks"]["state store"]
        wait(says_store_down, 30, "gw-a's /healthz to name the unreachable store", a)
        check = a.health()["checks"]["state store"]
        assert f"127.0.0.1:{pg.port}" in check and "postgresql://" in check
        refused = _storescu(a, tmp_path)  # an image the store cannot record: refused
        assert "Refused: OutOfResources" in refused, refused  # 0xA700
        time.sleep(5)  # work is attempted and paused meanwhile
    finally:
        pg.start()
    wait(lambda: len(delivered(cloud, api, exams)) == len(exams), 300,
         "every study and report delivered after the restart", a, b)
    wait(lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 60,
         "both nodes healthy again by themselves", a, b)
    assert a.proc.poll() is None and b.proc.poll() is None  # nobody restarted them


def test_a_node_killed_with_files_in_its_spool_the_other_retrieves_them(nodes, pacs, cloud,
                                                                       api, view_db):
    """...and when the killed node returns, it drops its stale copies of those studies."""
    a = nodes["gw-a"].start()
    exams = _load(pacs, view_db, 12)

    def a_holds_undelivered() -> bool:
        return bool(sql(a.url, "SELECT 1 FROM instances WHERE node='gw-a' AND state IN "
                               "('received', 'uploaded') LIMIT 1"))
    wait(a_holds_undelivered, 60, "gw-a to hold files not yet delivered", a)
    a.kill()  # power off with studies only in its spool
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
