"""A real worker process for the SIGKILL test: `python queue_worker.py STATE_DIR MARKS`.

Takes the daemon lock (as `dicomgate run` does), reclaims orphaned leases, then runs
every due `upload` task. The handler's first attempt hangs (to be killed); later ones
finish and write one `done` line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the project

from dicomgate.app import owner_id  # noqa: E402
from dicomgate.config import TasksConfig
from dicomgate.daemon_lock import DaemonLock  # noqa: E402
from dicomgate.state import Task
from dicomgate.state.kinds import Upload
from dicomgate.tasks import Registry, WorkerPool
from tests.support.engines import open_store


def main(state_dir: Path, marks: Path) -> int:
    lock = DaemonLock(state_dir)
    if not lock.acquire():
        return 3
    store = open_store(state_dir)

    def work(_work: Upload, task: Task) -> str:
        with marks.open("a") as f:
            f.write(f"start {task.key} attempt={task.attempts} pid={os.getpid()}\n")
        if task.attempts == 1:
            time.sleep(120)  # killed here
        with marks.open("a") as f:
            f.write(f"done {task.key}\n")
        return "ok"

    registry = Registry()
    registry.register("upload", work)
    pool = WorkerPool(store, registry, TasksConfig(workers=1, lease=300), owner_id())
    pool.reclaim_orphans()
    pool.drain(deadline=time.monotonic() + 60)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
