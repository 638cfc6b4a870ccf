"""One daemon per state dir: the lock file it holds, and which process holds it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_WAIT = 3.0  # seconds a daemon or `migrate` waits for the state dir's lock


class DaemonLock:
    """One daemon per state dir. The CLI uses it to know whether the daemon runs."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "daemon.lock"
        self._fd: int | None = None

    def acquire(self, wait: float = LOCK_WAIT) -> bool:
        """Take the lock, waiting up to `wait` s: `holder()` (every CLI command asks it)
        holds a shared lock for an instant, which must not make a starting daemon give up."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """The pid of the running daemon, or None when no process holds the lock."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = self.path.read_text().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
