"""This node among nodes sharing one PostgreSQL store: its heartbeat, the scheduler's
leader lease, and taking over the work of a node that died.

Every `BEAT_EVERY` seconds the node writes its beat and takes or renews the `scheduler`
lease. Scheduled jobs run only on the lease's holder, except the few that look after
this node's own disk or view (EVERY_NODE). The leader also hands a dead node's work back
(state/nodes.py `adopt`) and queues its unfinished studies for a new retrieve. With a
SQLite store (one host) none of this runs: the one process is the only node.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import structlog

from . import __version__
from .config import Config
from .state import Store
from .state.kinds import Retrieve
from .state.nodes import BEAT_EVERY, LEADER_TTL

log = structlog.get_logger("dicomgate.nodes")

LEADER_LEASE = "scheduler"
# Jobs about this node itself (its spool, its way to the cloud): they run on every node.
EVERY_NODE = frozenset({"spool.incoming_cleanup", "upstream.retention", "upstream.probe"})


class NodeService:
    name = "node"

    def __init__(self, config: Config, store: Store, owner: str,
                 tasks_done: Any = lambda: 0, on_leading: Any = lambda: None):
        self.node = config.gateway.node_name
        self.store = store
        self.owner = owner
        self.detail = _detail(config)
        self.tasks_done = tasks_done
        self.on_leading = on_leading  # called when this node becomes the leader
        self.leading = False
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def may_run(self, job: str) -> bool:
        """The scheduler's gate: a job runs here if it is this node's own or we lead."""
        return job in EVERY_NODE or self.leading

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="node-beat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(BEAT_EVERY + 5)
        self.leading = False
        try:
            self.store.nodes.left(self.owner)
        except Exception as exc:  # the others notice in NODE_TIMEOUT instead
            log.warning("node.leave_not_recorded", node=self.node, error=str(exc))

    def _loop(self) -> None:
        while not self._stop.wait(BEAT_EVERY):
            self.beat()

    def beat(self) -> None:
        """One beat: alive, leader or not, a dead node's work taken over. Any failure
        (PostgreSQL down) stops leading at once: no job may run on a lapsed lease."""
        started = time.monotonic()
        try:
            self.store.nodes.beat(self.node, self.owner, int(self.tasks_done()), self.detail)
            was, self.leading = self.leading, self.store.nodes.lead(
                LEADER_LEASE, self.node, self.owner, LEADER_TTL)
            if time.monotonic() - started > LEADER_TTL / 2:  # too slow to trust the lease
                self.leading = False
            if self.leading and not was:
                log.info("node.leading", node=self.node, lease_seconds=LEADER_TTL)
                self.on_leading()
            elif was and not self.leading:
                log.warning("node.not_leading", node=self.node,
                            leader=self.store.nodes.holder(LEADER_LEASE))
            if self.leading:
                self.adopt()
        except Exception as exc:
            if self.leading:
                log.warning("node.not_leading", node=self.node, error=str(exc))
            self.leading = False
            if self.problem is None:
                log.error("node.beat_failed", node=self.node, error=str(exc))
            self.problem = f"node {self.node} cannot reach the state store: {exc}"
            return
        if self.problem is not None:
            log.info("node.beat_resumed", node=self.node)
        self.problem = None

    def adopt(self) -> None:
        with self.store.transaction():
            moved = self.store.nodes.adopt(self.node)
            for m in moved:
                for uid in m.studies:
                    old = self.store.tasks.find(Retrieve.kind, Retrieve(study_uid=uid).key())
                    work = old.work if old is not None and isinstance(
                        old.work, Retrieve) else Retrieve(study_uid=uid)
                    self.store.tasks.enqueue(work, reopen=True, study_uid=uid)
        for m in moved:
            log.warning("node.work_taken_over", dead_node=m.node, by=self.node,
                        tasks_handed_back=m.tasks, studies_retrieved_again=len(m.studies))

    def health(self) -> str | None:
        return self.problem


def _detail(config: Config) -> dict[str, Any]:
    """What `status` shows of a node besides its beat: where the PACS and the HIS reach it."""
    out: dict[str, Any] = {"version": __version__, "pid": os.getpid(),
                           "ae_title": config.dicom.ae_title, "dicom_port": config.dicom.port}
    if config.shim is not None:
        out["shim"] = f"{config.shim.bind}:{config.shim.port}"
    return out


def nodes_view(config: Config, store: Store, running_here: bool) -> list[dict[str, Any]]:
    """Every node of this gateway for status, /healthz, /metrics and the console. One
    SQLite host: itself, alive when its daemon runs."""
    if config.state is None:
        return [{"name": config.gateway.node_name, "alive": running_here, "last_seen": None,
                 "started_at": None, "tasks_done": None, "leader": running_here}]
    now = time.time()
    leader = store.nodes.holder(LEADER_LEASE)
    return [n.public(now, leader) for n in store.nodes.all()]
