"""This node among nodes sharing one PostgreSQL store: its heartbeat, the scheduler's
leader lease, and taking over the work of a node that died.

Every `BEAT_EVERY` seconds the node writes its beat and takes or renews the `scheduler`
lease. Scheduled jobs run only on the lease's holder, except the few that look after
this node's own disk or view (EVERY_NODE). The leader also hands a dead node's work back
(state/nodes.py `adopt`) and queues its unfinished studies for a new retrieve.

Files stay in the spool of the node that received them, so each node cleans its own: a
deletion received by another node reaches this one as a `spool_purge` task bound to it, and
at start (and every SWEEP_EVERY) the spool is swept of copies the store now records on
another node or as deleted or purged (e.g. studies re-retrieved elsewhere while this node
was down). With a SQLite store (one host) none of this runs: the one process is the only
node.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from . import __version__
from .config import Config
from .spool_layout import remove_instance, remove_instances
from .state import Store
from .state.kinds import Retrieve, SpoolPurge
from .state.nodes import BEAT_EVERY, LEADER_TTL
from .state.tasks import Task

log = structlog.get_logger("dicomgate.nodes")

LEADER_LEASE = "scheduler"
# Jobs about this node itself (its spool, its way to the cloud): they run on every node.
SWEEP_JOB = "node.spool_sweep"
EVERY_NODE = frozenset({"spool.incoming_cleanup", "upstream.retention", "upstream.probe",
                        SWEEP_JOB})
SWEEP_EVERY = 600.0
STOP_WAIT = 5.0  # a stopping leader waits this long for its running jobs
# A file younger than this is never swept: its receive may not have recorded its row yet.
SWEEP_GRACE = 300.0


class NodeService:
    name = "node"

    def __init__(self, config: Config, store: Store, owner: str,
                 tasks_done: Any = lambda: 0, on_leading: Any = lambda: None,
                 running_jobs: Any = set):
        self.node = config.gateway.node_name
        self.store = store
        self.owner = owner
        self.spool = config.gateway.spool_dir
        self.detail = _detail(config)
        self.tasks_done = tasks_done
        self.on_leading = on_leading  # called when this node becomes the leader
        self.running_jobs = running_jobs  # the scheduler's jobs running now
        self.leading = False
        # Monotonic time until which our lease surely holds (renewed with each beat): a
        # node that stalls past it starts no job, though its flag is not yet cleared.
        self.lead_until = 0.0
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def may_run(self, job: str) -> bool:
        """The scheduler's gate: a job runs here if it is this node's own or we lead."""
        return job in EVERY_NODE or (self.leading and time.monotonic() < self.lead_until)

    def start(self) -> None:
        self.beat()
        try:  # before the Portal AET and the workers start: nothing is being received
            self.sweep(grace=0.0)
        except Exception as exc:  # the store down: the next SWEEP_EVERY sweeps
            log.error("node.sweep_failed", node=self.node, error=str(exc))
        self._thread = threading.Thread(target=self._loop, name="node-beat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(BEAT_EVERY + 5)
        self.leading = False  # no leader's job starts here any more
        busy = self._leader_jobs_ending()
        if busy:  # the lease lapses by itself LEADER_TTL after the last beat instead
            log.warning("node.lease_kept", node=self.node, jobs=sorted(busy),
                        effect=f"the next leader starts within {LEADER_TTL:g}s, not at once")
            return
        try:
            self.store.nodes.left(self.owner)
        except Exception as exc:  # the others notice in NODE_TIMEOUT instead
            log.warning("node.leave_not_recorded", node=self.node, error=str(exc))

    def _leader_jobs_ending(self, wait: float = STOP_WAIT) -> set[str]:
        """Leader's jobs still running after up to `wait` seconds: while one runs, giving
        the lease away would let the next leader run it at the same time."""
        deadline = time.monotonic() + wait
        while True:
            busy = set(self.running_jobs()) - EVERY_NODE
            if not busy or time.monotonic() >= deadline:
                return busy
            time.sleep(0.1)

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
            # the lease runs LEADER_TTL from the store's clock at the renewal, which came
            # after `started`: half of it is a safe margin for clock-rate differences
            self.lead_until = started + LEADER_TTL / 2 if self.leading else 0.0
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

    def purge_deleted(self, work: SpoolPurge, task: Task) -> str:
        """A deletion received by another node: remove its files from this node's spool
        (the ones still marked deleted and recorded here)."""
        d = self.store.deletions.get(work.deletion_id)
        if d is None:
            return f"deletion {work.deletion_id} is not recorded: nothing to remove"
        files = [f for f in self.store.instances.still_deleted(d.sop_uids)
                 if f["node"] == self.node]
        removed = remove_instances(self.spool, files, log, "deletion")
        if removed:
            self.store.deletions.files_removed(d.id, removed)
        log.info("deletion.files_purged", node=self.node, deletion_id=d.id,
                 accession_no=d.accession_no, files_removed=removed)
        return f"{removed} file(s) removed from {self.node}'s spool"

    def sweep(self, grace: float = SWEEP_GRACE) -> str:
        """Remove spool files the store does not keep on this node (their instance recorded
        on another node, or here as deleted or purged) and older than `grace`: copies left
        by a take-over, a retrieve that moved, an identical copy received here of what
        another node holds, or a crash. A receive records its row before it places its
        file, so only a file placed in the last moments can meet a row not yet moved here:
        `grace` spares it (0 at start, when nothing is being received)."""
        cutoff = time.time() - grace
        removed = freed = 0
        for batch in _batches(_spool_files(self.spool), 500):
            for sop_uid in self.store.nodes.stale_copies(self.node, list(batch)):
                path = batch[sop_uid]
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if st.st_mtime >= cutoff:
                    continue
                if remove_instance(path, self.spool):
                    removed, freed = removed + 1, freed + st.st_size
        if removed:
            log.info("node.spool_swept", node=self.node, files_removed=removed, bytes=freed)
        return f"{removed} stale file(s) removed, {freed / 1e6:.1f} MB freed"


def _spool_files(spool: Path) -> Iterator[tuple[str, Path]]:
    """(SOP Instance UID, path) of every file in `<spool>/<study>/<series>/<sop>.dcm`;
    dot-folders (the receive's temp files) are not the spool's."""
    if not spool.is_dir():
        return
    for study in os.scandir(spool):
        if not study.is_dir(follow_symlinks=False) or study.name.startswith("."):
            continue
        for series in os.scandir(study.path):
            if series.is_dir(follow_symlinks=False):
                for f in os.scandir(series.path):
                    if f.name.endswith(".dcm") and f.is_file(follow_symlinks=False):
                        yield f.name[:-4], Path(f.path)


def _batches(items: Iterator[tuple[str, Path]], size: int) -> Iterator[dict[str, Path]]:
    batch: dict[str, Path] = {}
    for key, path in items:
        batch[key] = path
        if len(batch) >= size:
            yield batch
            batch = {}
    if batch:
        yield batch


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
    now = store.nodes.clock()  # the clock beats are written in
    leader = store.nodes.holder(LEADER_LEASE)
    return [n.public(now, leader) for n in store.nodes.all()]
