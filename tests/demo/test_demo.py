"""The whole flow on one machine: the demo, /healthz and /metrics with real traffic."""

from __future__ import annotations

import io
import re
import time

import pytest
import requests

from dicomgate.sandbox.demo import Demo
from tests.support import run_cli


def test_demo_exits_0_when_every_exam_is_delivered(tmp_path):
    r = run_cli("demo", "--dir", str(tmp_path / "demo"), "--exit-when-done",
                "--timeout", "180", timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "demo: every exam delivered" in r.stdout
    rows = [ln for ln in r.stdout.splitlines() if re.match(r"\s+DEMO\d+", ln)]
    assert len(rows) == 3
    for row in rows:
        _acc, report, expected, received, delivered, url = row.split()[:6]
        assert report == "pushed" and expected == received == delivered
        assert "info=" in url and "NOT decryptable" not in row
    assert "Traceback" not in r.stdout + r.stderr


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("demo"), out=io.StringIO(), echo_interval="1s")
    try:
        demo.start()
        progress = demo.wait(timeout=180)
        assert all(p.done() for p in progress), demo.out.getvalue()
        yield demo
    finally:
        demo.stop()


def shim(demo: Demo, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{demo.shim_port}{path}", timeout=10)


def metric(text: str, name: str, labels: str = "", default: float | None = None) -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    if m is None and default is not None:
        return default
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def test_metrics_count_real_traffic(running_demo):
    expected = sum(len(e.sop_uids) for e in running_demo.exams)
    text = shim(running_demo, "/metrics").text
    assert metric(text, "dicomgate_instances_received_total") == expected
    assert metric(text, "dicomgate_instances_uploaded_total") == expected
    assert metric(text, "dicomgate_instances_rejected_total") == 0
    assert metric(text, "dicomgate_tasks", '{kind="upload",state="done"}') >= 1
    assert metric(text, "dicomgate_pacs_up") == 1
    assert metric(text, "dicomgate_disk_free_bytes") > 0
    assert metric(text, "dicomgate_job_last_ok", '{job="reports.poll"}') == 1
    ok_label = '{code="200",endpoint="/getway/reportAndFilm/api/qrurl"}'
    before = metric(text, "dicomgate_http_requests_total", ok_label, default=0)
    for _ in range(3):
        r = shim(running_demo, "/getway/reportAndFilm/api/qrurl?accessNumber=A1&modality=CT"
                               "&hospitalId=H33010200001")
        assert r.json()["code"] == 200
    shim(running_demo, "/getway/reportAndFilm/api/qrurl?modality=CT")  # missing parameter
    text = shim(running_demo, "/metrics").text
    assert metric(text, "dicomgate_http_requests_total", ok_label) == before + 3
    assert metric(text, "dicomgate_http_requests_total",
                  '{code="202",endpoint="/getway/reportAndFilm/api/qrurl"}') >= 1


def wait_for_status(demo: Demo, status: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = shim(demo, "/healthz")
        if r.status_code == status or time.monotonic() > deadline:
            assert r.status_code == status, r.text
            return r.json()
        time.sleep(0.5)


def test_healthz_flips_to_503_when_the_pacs_stops(running_demo):
    body = wait_for_status(running_demo, 200)
    assert body["status"] == "ok"
    running_demo.pacs.stop()
    try:
        body = wait_for_status(running_demo, 503)
        assert body["status"] == "unhealthy"
        assert "HOSPPACS" in body["checks"]["pacs"]
        assert body["checks"]["state store"] == "ok"
    finally:
        running_demo.pacs.start()
    wait_for_status(running_demo, 200)


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    workdir = tmp_path / "demo"
    # As at a terminal: a run started in the background by a non-interactive shell (a CI
    # script's `cmd &`) inherits SIGINT ignored, and Python then never raises Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-m", "dicomgate.cli", "demo", "--dir",
                             str(workdir), "--timeout", "180"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        for line in proc.stdout:  # bounded by the demo's own --timeout
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("every exam delivered" in ln for ln in lines), "".join(lines)
        started = children_of(workdir)
        assert len(started) >= 3  # two Orthancs and the daemon
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "demo: stopping" in rest and "Traceback" not in rest
        assert children_of(workdir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children_of(workdir):
            os.kill(pid, signal.SIGKILL)


def children_of(workdir) -> list[int]:
    """Processes whose command line names the demo's directory (Orthanc, the daemon)."""
    import subprocess

    out = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_demo_says_which_peer_did_not_start_and_exits_1(tmp_path, monkeypatch, capsys):
    """A PACS port taken by someone else: a one-line reason and exit 1, not a hang."""
    import socket

    from dicomgate.sandbox import demo as demo_module
    from dicomgate.sandbox import orthanc

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(orthanc, "free_port", lambda: busy.getsockname()[1])
        rc = demo_module.run_demo(tmp_path / "demo", True, 30)
    out = capsys.readouterr().out
    assert rc == 1
    assert "demo: cannot start the sandbox: Orthanc HOSPPACS exited at start" in out
    assert "Traceback" not in out
