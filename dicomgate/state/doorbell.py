"""The task queue's doorbell across processes: one datagram to <state_dir>/wake.sock.

In-process workers are woken by TaskStore.listeners; a task committed by another process
(the CLI's `pull`, the SCP child, a script) rings the daemon here so its workers start at
once instead of at their next poll. Ringing is best effort: no daemon, no harm.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path


class Doorbell:
    def __init__(self, path: Path):
        self.path = path
        self._sock: socket.socket | None = None  # set in the listening (daemon) process

    def ring(self) -> None:
        if self._sock is not None:  # we are the listener: local listeners already know
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"!", str(self.path))
        except OSError:  # no daemon (no socket, refused) or a path too long for AF_UNIX
            pass

    def listen(self, on_ring: Callable[[], None]) -> bool:
        """Bind the socket (the daemon holds the state dir's lock, so a leftover file is
        stale) and call `on_ring` for every datagram. False if the socket cannot exist."""
        try:
            self.path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError:
            return False
        self._sock = sock
        threading.Thread(target=self._serve, args=(sock, on_ring), name="doorbell",
                         daemon=True).start()
        return True

    def _serve(self, sock: socket.socket, on_ring: Callable[[], None]) -> None:
        while True:
            try:
                sock.recv(64)
            except OSError:  # closed at shutdown
                return
            on_ring()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)
