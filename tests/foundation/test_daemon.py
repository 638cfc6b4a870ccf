"""`dicomgate run` as systemd runs it: READY and WATCHDOG over NOTIFY_SOCKET, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support import run_cli, start_daemon, wait_until


class NotifySocket:
    """$NOTIFY_SOCKET read all the time, as systemd reads it: a datagram socket nobody reads
    fills (net.unix.max_dgram_qlen, often 10 messages, 2 s of beats here) and then blocks the
    daemon's next notify, so it could not even stop."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[str] = []
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.closed.is_set():
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, wanted: str, timeout: float, after: int = 0) -> int:
        """Wait for a message containing `wanted` past the first `after` ones; its index."""
        return wait_until(lambda: next((i + 1 for i, m in enumerate(self.got[after:], after)
                                        if wanted in m), None),
                          timeout=timeout, what=repr(wanted), detail=lambda: str(self.got))

    def close(self) -> None:
        self.closed.set()
        self.reader.join(5)
        self.sock.close()


def test_run_reaches_ready_beats_watchdog_and_stops_on_sigterm(minimal_config, tmp_path):
    notify_path = tmp_path / "notify.sock"
    sock = NotifySocket(notify_path)
    proc = start_daemon(minimal_config, env={"NOTIFY_SOCKET": str(notify_path),
                                             "WATCHDOG_USEC": "400000"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = sock.wait_for("READY=1", 20)
        sock.wait_for("WATCHDOG=1", 5, after=ready)
        status = run_cli("status", "--json", config=minimal_config)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["daemon"]["running"] and data["daemon"]["pid"] == proc.pid
        second = run_cli("run", config=minimal_config, timeout=20)
        assert second.returncode == 1 and "another dicomgate daemon" in second.stdout
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 5
        events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
        # an empty state dir: the schema is created under the lock, before anything starts
        # (on PostgreSQL the node's leader lease is logged in between: node.leading)
        assert events[0] == "state.created" and "daemon.started" in events
        assert events[-1] == "daemon.stopped"
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


