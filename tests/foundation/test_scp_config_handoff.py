"""The Portal AET child runs on the configuration the daemon parsed at start: an edit of
the file without a restart must not reach a crash-restarted child (it would run other
settings than the daemon supervising it)."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

from dicomgate.sandbox.orthanc import free_port
from tests.support import gateway_toml, start_daemon, stop_daemon, wait_until, write_config


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def config_text(state: Path, port: int) -> str:
    return gateway_toml(state, port, bind="127.0.0.1", min_free_disk="1MB",
                        allowed_calling_aets=["MODALITY1"]) + '[log]\nformat = "json"\n'


def test_a_restarted_scp_child_keeps_the_daemons_settings(tmp_path):
    first, edited = free_port(), free_port()
    config = write_config(tmp_path / "dicomgate.toml", config_text(tmp_path / "state", first))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    pids: list[int] = []
    try:
        wait_until(lambda: listening(first), timeout=30, what="the Portal AET",
                   detail=log.read_text)
        # an edit nobody has applied yet (no restart): the child must not pick it up
        write_config(config, config_text(tmp_path / "state", edited))
        started = wait_until(
            lambda: [e for e in events(log) if e["event"] == "scp.process_started"],
            timeout=30, what="scp.process_started in the log", detail=log.read_text)
        pids = [e["pid"] for e in started]
        os.kill(pids[0], signal.SIGKILL)
        restarted = wait_until(
            lambda: [e for e in events(log) if e["event"] == "scp.process_restarted"],
            timeout=30, what="the restarted child", detail=log.read_text)
        pids.append(restarted[0]["pid"])
        wait_until(lambda: listening(first), timeout=30, what="the Portal AET again",
                   detail=log.read_text)
        assert not listening(edited)
    finally:
        stop_daemon(proc)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
