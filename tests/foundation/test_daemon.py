"""`dicomgate run` as systemd runs it: READY and WATCHDOG over NOTIFY_SOCKET, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

from tests.support import DICOMGATE, run_cli


def start_daemon(config, notify_path, **env):
    return subprocess.Popen(
        [*DICOMGATE, "--config", str(config), "run"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path), **env})


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
    proc = start_daemon(minimal_config, notify_path, WATCHDOG_USEC="400000")
    try:
        receive_until(sock, "READY=1", 20)
        receive_until(sock, "WATCHDOG=1", 5)
        status = run_cli("status", "--json", config=minimal_config)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["daemon"]["running"] and data["daemon"]["pid"] == proc.pid
        second = run_cli("run", config=minimal_config, timeout=20)
        assert second.returncode == 1 and "another dicomgate daemon" in second.stderr
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 5
        events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
        assert events[0] == "daemon.started" and events[-1] == "daemon.stopped"
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_status_on_a_fresh_state_dir(minimal_config):
    r = run_cli("status", config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert "daemon:      not running" in r.stdout and "schema" in r.stdout
    r = run_cli("status", "--json", config=minimal_config)
    data = json.loads(r.stdout)
    assert data["tasks"] == {} and data["dead_tasks"] == [] and data["disk"]["free_bytes"] > 0


def test_tasks_cli_lists_and_retries_dead(minimal_config, tmp_path):
    from dicomgate.state import Store

    store = Store(tmp_path / "state" / "state.db")
    from dicomgate.state.kinds import Retrieve

    tid = store.tasks.enqueue(Retrieve(study_uid="1.2.3")).id
    task = store.tasks.claim(["retrieve"], "me", 60)
    store.tasks.fail(task.id, "me", "PACS refused: unknown AE", retry_in=None)
    r = run_cli("tasks", "list", "--state", "dead", config=minimal_config)
    assert "study:1.2.3" in r.stdout and "unknown AE" in r.stdout
    r = run_cli("tasks", "retry", "--all-dead", config=minimal_config)
    assert r.returncode == 0 and "1 dead task(s)" in r.stdout
    assert store.tasks.get(tid).state == "pending"
    r = run_cli("tasks", "retry", str(tid), config=minimal_config)
    assert r.returncode == 1 and "only dead or cancelled" in r.stderr
    r = run_cli("tasks", "retry", config=minimal_config)
    assert r.returncode == 2
    r = run_cli("tasks", "list", "--json", config=minimal_config)
    assert json.loads(r.stdout)[0]["key"] == "study:1.2.3"


def test_version_and_usage_errors():
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("dicomgate ")
    r = run_cli("no-such-command")
    assert r.returncode == 2 and "Traceback" not in r.stderr
