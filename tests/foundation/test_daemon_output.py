"""Every line `dicomgate run` writes is one JSON object (journald, `jq`), its fatal
start-up errors included: a bad config, a port in use, a second daemon."""

from __future__ import annotations

import json
import socket
import subprocess

from dicomgate.sandbox.orthanc import free_port
from tests.support import (
    gateway_toml,
    run_cli,
    start_daemon,
    stop_daemon,
    toml_table,
    wait_until,
    write_config,
)


def json_lines(out: str) -> list[dict]:
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "the daemon wrote nothing"
    for line in lines:
        assert line.startswith("{"), f"not JSON: {line!r}"
    return [json.loads(line) for line in lines]


def test_invalid_config_is_one_json_event_naming_every_key(tmp_path):
    cfg = write_config(tmp_path / "bad.toml", f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp_path / 'state'}"
[dicom]
ae_title = "DICOMGATE"
port = "not a port"
min_free_disk = "lots"
""")
    r = run_cli("run", config=cfg)
    assert r.returncode == 2
    events = json_lines(r.stdout + r.stderr)
    assert [e["event"] for e in events] == ["daemon.config_invalid"]
    problems = events[0]["problems"]
    assert any("dicom.port" in p for p in problems), problems
    assert any("dicom.min_free_disk" in p for p in problems), problems
    assert events[0]["level"] == "critical"


def test_port_in_use_is_a_json_event(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", (
        gateway_toml(tmp_path / "state", 1, bind="127.0.0.1", min_free_disk="1MB")
        + toml_table("shim", bind="127.0.0.1", port=port, allow=["127.0.0.1/32"])))
    with socket.create_server(("127.0.0.1", port)):
        r = run_cli("run", config=cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    events = json_lines(r.stdout + r.stderr)
    failed = [e for e in events if e["event"] == "daemon.failed"]
    assert len(failed) == 1 and f"cannot listen on 127.0.0.1:{port}" in failed[0]["error"]
    assert "Traceback" not in r.stdout + r.stderr


def test_a_second_daemon_says_why_in_json(minimal_config, tmp_path):
    first = start_daemon(minimal_config, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        wait_until(lambda: run_cli("status", "--json", config=minimal_config).returncode == 0
                   and json.loads(run_cli("status", "--json",
                                          config=minimal_config).stdout)["daemon"]["running"],
                   timeout=30, what="the first daemon")
        r = run_cli("run", config=minimal_config)
    finally:
        stop_daemon(first)
    assert r.returncode == 1
    events = json_lines(r.stdout + r.stderr)
    assert [e["event"] for e in events] == ["daemon.failed"]
    assert f"(pid {first.pid})" in events[0]["error"]
    assert "another dicomgate daemon" in events[0]["error"]
