"""The application context that feature packages register themselves into.

Each feature package has a `feature.py` with `setup(app)`: it registers task
handlers, scheduled jobs, long-running services, health checks and status
sections. `setup` must be cheap and start nothing: the CLI builds an App too.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from .config import Config
from .scheduler import Scheduler
from .state import Store, Task
from .state.kinds import TaskKind
from .tasks import GENERAL, Handler, Registry, WorkerPool

# Feature packages, in start order. Each module has `setup(app: App)`; what it returns (the
# feature's own objects, or None) is kept in `App.features` under the package's name.
FEATURES: tuple[str, ...] = (
    "dicomgate.images.feature",
    "dicomgate.reports.feature",
    "dicomgate.shim.feature",
    "dicomgate.upstream.feature",
    "dicomgate.console.feature",
)


K = TypeVar("K", bound=TaskKind)


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


HealthCheck = Callable[[], "str | None"]  # None when healthy, else the reason
StatusSection = Callable[[], dict[str, Any]]
# A long operation's progress, for the CLI to show: (subject, e.g. a study UID, summary).
Progress = Callable[[str, Any], None]
# An operator's action (re-read an exam, re-send rejected images): named arguments in, a
# sentence for the person out; raises ActionError when it cannot be done.
OperatorAction = Callable[..., str]
WsgiApp = Callable[[dict, Callable], Any]


class ActionError(Exception):
    """An operator action refused or failed; the message says why, for a person."""


@dataclass
class App:
    config: Config
    store: Store
    owner: str
    registry: Registry = field(default_factory=Registry)
    services: list[Service] = field(default_factory=list)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    status_sections: dict[str, StatusSection] = field(default_factory=dict)
    progress: Progress | None = None  # given by the CLI; features pass it to long operations
    features: dict[str, Any] = field(default_factory=dict)  # what each setup() returned
    actions: dict[str, OperatorAction] = field(default_factory=dict)
    mounts: dict[str, WsgiApp] = field(default_factory=dict)
    lane_notes: dict[str, HealthCheck] = field(default_factory=dict)  # e.g. C-MOVE stalled
    node: Any = None  # NodeService when nodes share a PostgreSQL store (nodes.py)
    scheduler: Scheduler = field(init=False)
    pool: WorkerPool = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.store)
        self.pool = WorkerPool(self.store, self.registry, self.config.tasks, self.owner)

    @classmethod
    def build(cls, config: Config, store: Store | None = None,
              progress: Progress | None = None) -> App:
        store = store or Store(config.store_location)
        app = cls(config=config, store=store, owner=owner_id(config.gateway.node_name),
                  progress=progress)
        if config.state is not None:  # nodes sharing a PostgreSQL store
            from .nodes import SWEEP_EVERY, SWEEP_JOB, NodeService
            from .state.kinds import SpoolPurge

            node = NodeService(config, store, app.owner, tasks_done=lambda: store.tasks.completed,
                               on_leading=app.scheduler.kick,
                               running_jobs=app.scheduler.running)
            app.node = node
            app.scheduler.gate = node.may_run
            app.add_service(node, health=node.health)
            app.handle(SpoolPurge, node.purge_deleted)
            app.every(SWEEP_JOB, SWEEP_EVERY, node.sweep, first_in=SWEEP_EVERY)
        for name in FEATURES:
            part = importlib.import_module(name).setup(app)
            if part is not None:
                app.features[name.split(".")[1]] = part
        return app

    # -- registration (called from feature setup) -----------------------------------------
    def handle(self, kind: type[K], handler: Callable[[K, Task], str | None],
               max_attempts: int | None = None, lane: str = GENERAL) -> None:
        """`handler(work, task)` gets the payload as `kind`, decoded by the store.
        `lane`: the thread group it runs in (see `lane`); default: tasks.workers."""
        self.registry.register(kind.kind, cast(Handler, handler), max_attempts, lane)

    def lane(self, name: str, threads: int, note: HealthCheck | None = None) -> None:
        """Threads of their own for some kinds: hung work of those kinds (a C-MOVE the PACS
        never finishes) can hold only these, and report pushes never wait behind images.
        `note`: what `status` says about the lane (None when nothing to say)."""
        self.registry.add_lane(name, threads)
        if note is not None:
            self.lane_notes[name] = note

    def every(self, name: str, seconds: float, func: Callable[[], object],
              first_in: float = 0.0) -> None:
        self.scheduler.every(name, seconds, func, first_in)

    def add_service(self, service: Service, health: HealthCheck | None = None) -> None:
        self.services.append(service)
        if health is not None:
            self.health_checks[service.name] = health

    def add_health(self, name: str, check: HealthCheck) -> None:
        """A condition `/healthz` reports on (a peer down, a job failing)."""
        self.health_checks[name] = check

    def add_status(self, name: str, section: StatusSection) -> None:
        self.status_sections[name] = section

    def add_action(self, name: str, action: OperatorAction) -> None:
        """An operator action the CLI and the console both call (one code path)."""
        self.actions[name] = action

    def add_mount(self, prefix: str, wsgi: WsgiApp) -> None:
        """A WSGI application served under `prefix` on the shim's listener (allow-list
        applies), e.g. the operator console at /console."""
        self.mounts["/" + prefix.strip("/")] = wsgi

    # -- use ------------------------------------------------------------------------------
    def health(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        out["state store"] = self.store.db.problem()
        out["scheduler"] = None if self.scheduler.alive() else "scheduler is not running"
        out["workers"] = self.pool.health()
        for name, check in self.health_checks.items():
            try:
                out[name] = check()
            except Exception as exc:
                out[name] = f"health check failed: {exc}"
        return out


def owner_id(node: str | None = None) -> str:
    """`node:pid:ms`: a node's processes share the prefix (reclaim_foreign relies on it)."""
    return f"{node or socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000)}"
