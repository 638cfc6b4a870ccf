"""The scheduler's leader lease on a shared PostgreSQL store: measured by the store's
clock (a node whose clock runs ahead neither steals a live lease nor declares a live node
dead), trusted only while surely held, and not handed over while a leader's job runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import dicomgate.state.nodes as node_state
from dicomgate.config.load import parse
from dicomgate.nodes import LEADER_LEASE, NodeService
from dicomgate.state import Store
from dicomgate.state.kinds import PushReport

OWNER = {"gw-a": "gw-a:1:1", "gw-b": "gw-b:2:2"}


def _config(url: str, tmp_path: Path, name: str):
    return parse({"gateway": {"hospital_id": "H1", "state_dir": str(tmp_path / name),
                              "node_name": name},
                  "dicom": {"ae_title": "DGATE"}, "state": {"url": url}},
                 tmp_path / f"{name}.toml")


@pytest.fixture
def stores(pg, tmp_path) -> Iterator[dict]:
    url = pg.new_database()
    made = {n: Store(_config(url, tmp_path, n).store_location) for n in OWNER}
    yield {**made, "url": url}
    for s in made.values():
        s.close()


def test_a_node_whose_clock_runs_ahead_takes_no_live_lease_and_kills_no_live_node(
        stores, monkeypatch):
    a, b = stores["gw-a"], stores["gw-b"]
    a.nodes.beat("gw-a", OWNER["gw-a"], 0, {})
    assert a.nodes.lead(LEADER_LEASE, "gw-a", OWNER["gw-a"])
    a.tasks.enqueue(PushReport(1, 1))
    assert a.tasks.claim(["push_report"], OWNER["gw-a"], lease=600) is not None
    real = time.time
    # gw-b's host clock is two minutes ahead of everyone's: its own time must not count
    monkeypatch.setattr(node_state, "time", SimpleNamespace(time=lambda: real() + 120))
    assert not b.nodes.lead(LEADER_LEASE, "gw-b", OWNER["gw-b"])
    assert b.nodes.holder(LEADER_LEASE) == "gw-a"
    assert b.nodes.adopt("gw-b") == []  # gw-a beat a moment ago: alive
    assert [t.state for t in b.tasks.list(kind="push_report")] == ["running"]


def test_a_stalled_leader_starts_no_job_once_its_lease_may_have_lapsed(stores, tmp_path):
    node = NodeService(_config(stores["url"], tmp_path, "gw-a"),
                       stores["gw-a"], OWNER["gw-a"])
    node.beat()
    assert node.leading and node.may_run("reports.poll")
    node.lead_until = time.monotonic() - 0.01  # no beat for half the lease: a stall
    assert node.leading and not node.may_run("reports.poll")
    assert node.may_run("upstream.retention")  # this node's own disk: always


def test_a_stopping_leader_keeps_the_lease_while_its_job_runs(stores, tmp_path):
    running = {"reports.poll"}
    node = NodeService(_config(stores["url"], tmp_path, "gw-a"),
                       stores["gw-a"], OWNER["gw-a"], running_jobs=lambda: set(running))
    node.start()
    assert node.leading
    ended = threading.Timer(1.0, running.clear)  # the poll ends within the stop's wait
    ended.start()
    node.stop()
    assert stores["gw-b"].nodes.holder(LEADER_LEASE) is None  # handed over at once
    running.add("reports.poll")
    node = NodeService(_config(stores["url"], tmp_path, "gw-a"),
                       stores["gw-a"], OWNER["gw-a"] + "0", running_jobs=lambda: set(running))
    node.start()
    assert node.leading
    node.stop()  # the poll outlives the wait: the lease stays until it lapses
    assert stores["gw-b"].nodes.holder(LEADER_LEASE) == "gw-a"
    assert not stores["gw-b"].nodes.lead(LEADER_LEASE, "gw-b", OWNER["gw-b"])
