"""The Portal AET in a child process of the daemon (`python -m dicomgate.images.scp_process`).

Receiving (pynetdicom, hashing, SQLite commits) and uploading (STOW-RS) are both mostly
Python: in one process they take turns on the GIL. Here the SCP gets a core of its own.
The child builds only what storing needs and talks to the daemon (scp_supervisor.py) over
a pipe, one word per line: `ready`, or `error <why>` (it cannot start). The upload tasks
it commits wake the daemon's workers through the task queue's doorbell. It stops on
stdin closing (the daemon stops it so, or died); a SIGTERM alone starts a deadline. Its
configuration is the daemon's own parsed object, sent on stdin first (config/handoff.py), never
the file re-read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import structlog

from .. import logs
from ..config import handoff
from ..signal_pipe import SignalPipe
from ..state import Store
from . import pynetdicom_tuning
from .ingest import Ingest
from .pynetdicom_tuning import receiving_suffix
from .scp import StorageSCP
from .spool import Spool

log = structlog.get_logger("dicomgate.images.scp_process")

DRAIN_SECONDS = 5.0  # open associations get this long to end on their own at shutdown
PARENT_GRACE = 20.0  # after a SIGTERM, how long the daemon has to stop us in order


class Pipe:
    """The write end of the pipe to the daemon. Never blocks: if the pipe is full, a
    wake-up is already waiting there, and a gone daemon is noticed through stdin."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)

    def say(self, line: str) -> None:
        try:
            os.write(self.fd, (line.replace("\n", " ") + "\n").encode()[:4000])
        except (BlockingIOError, BrokenPipeError):
            pass


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    pipe = Pipe(args.notify_fd)
    try:
        config = handoff.receive(0)  # what the daemon parsed, on stdin
    except handoff.HandoffError as exc:
        pipe.say(f"error {exc}")
        return 2
    logs.configure(config.log.level, config.log.format)
    signals = SignalPipe().install()
    pynetdicom_tuning.skip_value_validation()  # this process only receives (see there)
    store = Store.open(config.store_location)  # the daemon migrated it under its lock
    scp = StorageSCP(config, Ingest(store, Spool(config.gateway.state_dir),
                                    config.dicom.min_free_disk,
                                    queue_uploads=config.upstream is not None),
                     index=args.index, shared_port=config.dicom.scp_processes > 1)
    try:
        # After a restart only our own leftovers go: the daemon's HTTP downloads share
        # the incoming dir.
        # Process 0 starts first and alone: it clears every leftover of an earlier run.
        first = args.index == 0 and not args.restart
        scp.start(clean="" if first else receiving_suffix(args.index))
    except RuntimeError as exc:
        pipe.say(f"error {exc}")
        store.close()
        return 2
    pipe.say("ready")
    _until_stopped(signals)
    log.info("scp.stopping", pid=os.getpid(), drain_seconds=DRAIN_SECONDS)
    scp.stop(drain=DRAIN_SECONDS)
    store.close()
    log.info("scp.stopped", pid=os.getpid())
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dicomgate.images.scp_process",
                                description="internal: the daemon's Portal AET process")
    p.add_argument("--notify-fd", type=int, required=True)
    p.add_argument("--restart", action="store_true", help="not the daemon's first start")
    p.add_argument("--index", type=int, default=0, help="which of dicom.scp_processes")
    return p.parse_args(argv)


def _until_stopped(signals: SignalPipe) -> None:
    """Until the daemon closes our stdin (its way of stopping us, after it cancelled the
    C-MOVEs under way) or goes away (even by SIGKILL: its end of the pipe closes). A
    SIGTERM/SIGINT while the daemon runs (systemd signals every process of the service at
    once) only starts a PARENT_GRACE deadline: the Portal AET keeps answering the PACS until
    the daemon's retrieves are handed back, then the daemon stops it."""
    parent = os.getppid()
    deadline: float | None = None
    while deadline is None or time.monotonic() < deadline:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        names, readable = signals.wait(timeout, 0)
        # os.read, not sys.stdin: nothing buffered; b"": end of file
        if readable and not os.read(0, 4096):
            return
        for name in names:
            if os.getppid() != parent:  # the daemon is gone: nobody will stop us in order
                log.info("scp.signal", signal=name)
                return
            log.info("scp.signal", signal=name, effect="stopping when the daemon says so, "
                     f"at most {PARENT_GRACE:g}s from now")
            if deadline is None:
                deadline = time.monotonic() + PARENT_GRACE


def guarded_main() -> int:
    """Whatever goes wrong reaches the daemon's log as one line, never a traceback."""
    try:
        return main()
    except Exception as exc:
        log.error("scp.process_crashed", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(guarded_main())
