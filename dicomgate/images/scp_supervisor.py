"""The daemon's side of the Portal AET process (scp_process.py): start it, report it dead
on /healthz, restart it, stop it.

A restart waits 1, 2, 4... s; after MAX_RESTARTS deaths without STABLE_SECONDS of uptime
in between, the supervisor gives up (a crash loop only fills the log) and /healthz says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO

import structlog

from ..config import Config, handoff
from ..state import Store
from .scp_process import DRAIN_SECONDS
from .spool import Spool

log = structlog.get_logger("dicomgate.images.scp_supervisor")

MAX_RESTARTS = 5
STABLE_SECONDS = 60.0
START_TIMEOUT = 30.0


@dataclass
class _Child:
    proc: subprocess.Popen
    pipe: IO[bytes]  # read end of the child's notification pipe


class ScpSupervisor:
    """A daemon service (start/stop/health) running the storage SCP in a child process."""

    name = "storage SCP"

    def __init__(self, config: Config, spool: Spool, store: Store | None = None,
                 index: int = 0):
        self.config = config
        self.index = index  # which of dicom.scp_processes
        self.spool = spool
        self.store = store  # where a death is noted for the retrieve it interrupted
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._ready = threading.Event()  # the current child listens
        self._error: str | None = None  # why the current child could not start
        self._deaths = 0
        self._gave_up = False
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        child = self._spawn(restart=False)
        self._thread = threading.Thread(target=self._supervise, args=(child,),
                                        name="scp-supervisor", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready.wait(0.05):
            if child.proc.poll() is not None or time.monotonic() > deadline:
                self._thread.join(2)  # it reads the child's last words
                self.stop()
                raise RuntimeError(self._error or "the storage SCP process did not start "
                                   f"(exit {_exit(child.proc.poll())}): see its log lines")

    def stop(self) -> None:
        """Close the child's stdin: it stops accepting, lets open associations end
        (bounded), exits. (A SIGTERM alone only starts its deadline: see scp_process.)"""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(DRAIN_SECONDS + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                log.error("scp.process_killed", pid=proc.pid, reason="did not stop in time")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def health(self) -> str | None:
        proc = self._proc
        if self._gave_up:
            return (f"storage SCP process died {self._deaths} times in a row; no more "
                    "restarts: see scp.process_died in the log, then restart dicomgate")
        if proc is None or proc.poll() is not None:
            return (f"storage SCP process is not running (exit {_exit(proc and proc.poll())});"
                    " restarting it")
        if not self._ready.is_set():
            return "storage SCP process is starting"
        short = self.spool.short_of_space(self.config.dicom.min_free_disk)
        if short:
            return f"{short}: C-STORE answered 0xA700 until space is freed"
        return None

    # -- internals ------------------------------------------------------------------------
    def _spawn(self, restart: bool) -> _Child:
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "dicomgate.images.scp_process",
               "--notify-fd", str(write_fd), "--index", str(self.index)]
        try:
            # stdin stays open and unused: the child sees EOF when the daemon dies.
            proc = subprocess.Popen([*cmd, *(["--restart"] if restart else [])],
                                    stdin=subprocess.PIPE, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:  # the daemon's parsed config, never a re-read of the file (edited since?)
            handoff.send(self.config, proc.stdin)  # type: ignore[arg-type]
        except BrokenPipeError:
            pass  # it died at once: the supervisor reads its last words and exit code
        self._ready.clear()
        self._error = None
        self._proc = proc
        return _Child(proc, os.fdopen(read_fd, "rb"))

    def _supervise(self, child: _Child) -> None:
        first = True
        while True:
            started = time.monotonic()
            self._listen(child.pipe, restarted=not first)
            code = child.proc.wait()
            if child.proc.stdin:
                child.proc.stdin.close()
            if code == 0:  # it stops only when asked: systemd signals the whole cgroup,
                self._stopping.wait(2.0)  # so the daemon is likely stopping too
            if self._stopping.is_set() or (first and not self._ready.is_set()):
                return  # stopped on purpose, or start() reports the failure
            next_child = self._restart(code, time.monotonic() - started)
            if next_child is None:
                return
            child, first = next_child, False

    def _listen(self, pipe: IO[bytes], restarted: bool) -> None:
        """Until the child closes its end (it exited)."""
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").strip()
                if line == "ready":
                    self._ready.set()
                    pid = self._proc.pid if self._proc else None
                    if restarted:
                        log.warning("scp.process_restarted", pid=pid, deaths=self._deaths)
                    else:
                        log.info("scp.process_started", pid=pid)
                elif line.startswith("error "):
                    self._error = line[6:]

    def _restart(self, code: int, uptime: float) -> _Child | None:
        if uptime >= STABLE_SECONDS:
            self._deaths = 0
        self._deaths += 1
        self._note_death(code)
        if self._deaths > MAX_RESTARTS:
            self._gave_up = True
            log.error("scp.process_given_up", exit=_exit(code), deaths=self._deaths - 1,
                      error=self._error)
            return None
        delay = float(2 ** (self._deaths - 1))
        log.error("scp.process_died", exit=_exit(code), error=self._error,
                  uptime_seconds=round(uptime, 1), restart_in=delay, attempt=self._deaths,
                  max_restarts=MAX_RESTARTS)
        if self._stopping.wait(delay):
            return None
        with self._lock:
            if self._stopping.is_set():
                return None
            return self._spawn(restart=True)


    def _note_death(self, code: int) -> None:
        if self.store is None:
            return
        try:
            self.store.dicom_events.record("scp_process_died", f"{_exit(code)}; restarted")
        except Exception as exc:  # the disk may be full: the log line still says it
            log.warning("scp.event_not_recorded", cause="process_died",
                        error=f"{type(exc).__name__}: {exc}")


def _exit(code: int | None) -> str:
    if code is None:
        return "none yet"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"code {code}"


class ScpPool:
    """dicom.scp_processes Portal AET processes accepting on the one port (SO_REUSEPORT),
    each supervised on its own: a PACS sending several associations at once is served by
    several processes instead of one GIL (bench/README.md, Portal AET concurrency)."""

    name = "storage SCP"

    def __init__(self, config: Config, spool: Spool, store: Store | None = None):
        self.members = [ScpSupervisor(config, spool, store, index=i)
                        for i in range(config.dicom.scp_processes)]

    def start(self) -> None:
        started: list[ScpSupervisor] = []
        try:
            for member in self.members:  # in order: process 0 clears leftovers first
                member.start()
                started.append(member)
        except Exception:
            for member in reversed(started):
                member.stop()
            raise

    def stop(self) -> None:
        for member in reversed(self.members):
            member.stop()

    def health(self) -> str | None:
        for member in self.members:
            problem = member.health()
            if problem is not None:
                if len(self.members) == 1:
                    return problem
                return f"Portal AET process {member.index + 1} of {len(self.members)}: {problem}"
        return None
