"""Two `dicomgate run` nodes against one PostgreSQL share the backlog: both complete
tasks, nothing is delivered twice, and either answers the PACS's HTTP calls."""

from __future__ import annotations

import time

from ha_harness import delivered, report_pushes, wait
from ha_harness import load as _load

from dicomgate.state.nodes import BEAT_EVERY


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
