"""`dicomgate run`: wire the enabled components, tell systemd, stop cleanly on a signal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from . import __version__, notify
from .app import App
from .config import Config
from .daemon_lock import DaemonLock
from .signal_pipe import SignalPipe
from .state import StateError, Store, migrate
from .state.db import secure_dir

log = structlog.get_logger("dicomgate.daemon")


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def run(config: Config, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    lock = _lock(config)
    try:
        store = _open_store(config)
        app = App.build(config, store)
    except BaseException:
        lock.release()
        raise
    wait = _install_signals(stop)
    started: list = []
    try:
        if not store.tasks.doorbell.listen(app.pool.wake):
            log.warning("daemon.no_doorbell", path=str(store.tasks.doorbell.path),
                        effect="tasks queued by other processes start within 1 s, not at once")
        store.db.listen(app.pool.wake)  # nodes sharing a store: another's enqueue wakes ours
        app.pool.reclaim_orphans()
        for service in app.services:
            service.start()
            started.append(service)
            log.info("service.started", service=service.name)
        app.scheduler.start()
        app.pool.start()
        notify.notify(f"READY=1\nSTATUS=running, features: {_features(config)}")
        log.info("daemon.started", version=__version__, config=str(config.path),
                 state_dir=str(config.gateway.state_dir), features=_features(config),
                 task_kinds=app.registry.kinds(), jobs=app.scheduler.names())
        _watch(app, wait)
    finally:
        notify.notify("STOPPING=1")
        log.info("daemon.stopping")
        t0 = time.monotonic()
        app.pool.stop_claiming()  # nothing new starts while the services stop
        app.scheduler.stop()
        for service in reversed(started):  # stop accepting work first
            try:
                service.stop()
            except Exception as exc:
                log.error("service.stop_failed", service=service.name, error=str(exc))
        app.pool.stop()
        store.tasks.doorbell.close()
        store.close()
        lock.release()
        log.info("daemon.stopped", seconds=round(time.monotonic() - t0, 2))
    return 0


def _lock(config: Config) -> DaemonLock:
    """The state dir's lock, before anything reads the store: the schema may change only
    while it is held, so a command typed during start-up can never race the migration."""
    try:
        secure_dir(config.gateway.state_dir)
    except StateError as exc:
        raise DaemonError(str(exc)) from None
    lock = DaemonLock(config.gateway.state_dir)
    if not lock.acquire():
        raise DaemonError(f"another dicomgate daemon or `dicomgate migrate` (pid "
                          f"{lock.holder()}) holds state dir {config.gateway.state_dir}: stop "
                          "the daemon first (systemctl stop dicomgate), or let the migration "
                          "finish")
    return lock


def _open_store(config: Config) -> Store:
    try:
        report = migrate(config.store_location, config.gateway.state_dir / "backups")
        if report.applied:
            log.info("state.created" if report.from_version == 0 else "state.migrated",
                     schema_from=report.from_version,
                     schema_to=report.to_version, migrations=list(report.applied),
                     backup=str(report.backup) if report.backup else None)
        return Store.open(config.store_location)
    except StateError as exc:
        raise DaemonError(str(exc)) from None


def _watch(app: App, wait: Callable[[float], bool]) -> None:
    """Beat the systemd watchdog while the components are healthy, until `wait` says stop."""
    period = notify.watchdog_period()
    last_bad: dict[str, str | None] = {}
    while not wait(period):
        health = app.health()
        bad = {k: v for k, v in health.items() if v}
        if bad != last_bad:
            if bad:
                log.warning("daemon.unhealthy", problems=bad)
            else:
                log.info("daemon.healthy")
            last_bad = bad
        # The state store and scheduler are the daemon's own organs: if they are dead,
        # withholding the beat lets systemd restart us. Peers being down is not our fault.
        # A shared PostgreSQL store that is down is a peer being down: restarting us would
        # not bring it back, and work resumes by itself when it answers.
        store_ours = app.store.db.engine == "sqlite"
        if not (store_ours and bad.get("state store")) and not bad.get("scheduler"):
            notify.notify("WATCHDOG=1")


def _install_signals(stop: threading.Event) -> Callable[[float], bool]:
    """SIGTERM and SIGINT set `stop`; returns the wait the main loop uses (`stop.wait`
    elsewhere than in the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return stop.wait
    return SignalStop(stop).install()


class SignalStop:
    """The daemon's stop on SIGTERM/SIGINT: the handler only writes to a pipe
    (signal_pipe.py); the main loop's wait logs the signal and sets `stop`."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.signals = SignalPipe()

    def install(self) -> Callable[[float], bool]:
        self.signals.install()
        return self.wait

    def wait(self, timeout: float) -> bool:
        """Like `stop.wait(timeout)`, woken by a signal as well; True once stopping."""
        if not self.stop.is_set():
            names, _ = self.signals.wait(timeout)
            for name in names:
                log.info("daemon.signal", signal=name)
            if names:
                self.stop.set()
        return self.stop.is_set()


def _features(config: Config) -> str:
    return ", ".join(k for k, on in config.features().items() if on)
