"""Two `dicomgate run` nodes against one PostgreSQL: the leader killed mid-backlog, the
other takes the lease, finishes everything and polls, and answers the PACS throughout."""

from __future__ import annotations

import threading
import time

from ha_harness import delivered, report_pushes, wait
from ha_harness import load as _load

from dicomgate.state.nodes import BEAT_EVERY, LEADER_TTL, NODE_TIMEOUT


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
