"""`dicomgate run` as systemd runs it: READY and WATCHDOG over NOTIFY_SOCKET, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

from tests.support import run_cli, start_daemon


def receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(wanted in m for m in got):
            return got
    raise AssertionError(f"no {wanted!r} within {timeout}s; got {got}")


def test_run_reaches_ready_beats_watchdog_and_stops_on_sigterm(minimal_config, tmp_path):
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    proc = start_daemon(minimal_config, env={"NOTIFY_SOCKET": str(notify_path),
                                             "WATCHDOG_USEC": "400000"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receive_until(sock, "READY=1", 20)
        receive_until(sock, "WATCHDOG=1", 5)
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
        assert events[:2] == ["state.created", "daemon.started"]
        assert events[-1] == "daemon.stopped"
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


