"""The CLI as a PACS administrator uses it: echo, pull (with and without the daemon),
study show; and the scheduled echo's up/down transitions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from dicomgate.cli import main
from dicomgate.config.load import load
from dicomgate.images.echo import FACT, EchoMonitor
from dicomgate.images.scu import PacsClient
from dicomgate.sandbox.studies import StudySpec, bundled_instances, ct_instances
from tests.support import DICOMGATE, start_daemon, stop_daemon, wait_until
from tests.support.engines import open_store


def test_echo_cli_up_and_down(config_path, pacs, capsys):
    assert main(["--config", str(config_path), "echo"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "ms round trip" in out and "HOSPPACS" in out
    pacs.stop()
    assert main(["--config", str(config_path), "echo"]) == 1
    err = capsys.readouterr().err
    assert "C-ECHO failed" in err and "did not answer" in err


def test_scheduled_echo_transitions(config_path, pacs):
    cfg = load(config_path)
    store = open_store(cfg)
    monitor = EchoMonitor(store, PacsClient(cfg.dicom, cfg.pacs))
    with capture_logs() as logs:
        assert "ms" in monitor.run()
        monitor.run()
        pacs.stop()
        with pytest.raises(RuntimeError, match="did not answer"):
            monitor.run()
        assert store.facts.get(FACT)["ok"] is False
        pacs.start()
        monitor.run()
    events = [e["event"] for e in logs if e["event"].startswith("pacs.")]
    assert events == ["pacs.up", "pacs.down", "pacs.up"]  # transitions only
    fact = store.facts.get(FACT)
    assert fact["ok"] is True and fact["latency_ms"] > 0
    store.close()


def test_pull_by_uid_without_daemon_then_study_show(config_path, pacs, capsys):
    spec = StudySpec(accession="ACC400")
    for d in bundled_instances(spec)[:4] + ct_instances(spec, series=1, per_series=4):
        pacs.upload(d)
    assert main(["--config", str(config_path), "pull", "--study-uid", spec.study_uid]) == 0
    out = capsys.readouterr().out
    assert f"study {spec.study_uid}: complete, 8/8 instances" in out
    assert main(["--config", str(config_path), "study", "show", spec.study_uid, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["study"]["state"] == "complete"
    assert {i["sop_uid"] for i in shown["instances"]} == pacs.sop_uids(spec.study_uid)
    assert all(len(i["sha256"]) == 64 and Path(i["path"]).exists()
               for i in shown["instances"])
    assert main(["--config", str(config_path), "study", "show", spec.study_uid]) == 0
    text = capsys.readouterr().out
    assert "state:     complete" in text and "TRANSFER_SYNTAX" in text
    assert main(["--config", str(config_path), "study", "show", "1.2.3"]) == 1
    assert "no study 1.2.3" in capsys.readouterr().err


def _wait_listening(log: Path, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Until the daemon's Portal AET says it listens. Not by connecting to its port: a
    bare TCP connection stays an open association there, which its stop then drains."""
    def listening() -> bool:
        assert proc.poll() is None, "daemon exited at start"
        return log.exists() and "scp.listening" in log.read_text()

    wait_until(listening, timeout, what="the daemon's Portal AET to listen")


def test_pull_by_accession_hands_over_to_running_daemon(config_path, pacs, gw_port, capsys,
                                                        tmp_path):
    spec = StudySpec(accession="ACC500")
    for d in ct_instances(spec, series=2, per_series=3):
        pacs.upload(d)
    proc = start_daemon(config_path, tmp_path / "daemon.log")
    try:
        _wait_listening(tmp_path / "daemon.log", proc)
        code = main(["--config", str(config_path), "pull", "--accession", "ACC500"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert f"study {spec.study_uid}: complete, 6/6 instances" in out.out
        store = open_store(load(config_path))
        task = store.tasks.find("retrieve", "acc:H33010200001:ACC500")
        assert task is not None and task.state == "done"  # the daemon did it
        assert store.instances.study(spec.study_uid)["accession_no"] == "ACC500"
        store.close()
    finally:
        stop_daemon(proc, timeout=20)
    daemon_log = (tmp_path / "daemon.log").read_text()
    assert "scp.listening" in daemon_log and "study.complete" in daemon_log


def test_pull_reports_unreachable_pacs(config_path, pacs, capsys):
    pacs.stop()
    assert main(["--config", str(config_path), "pull", "--study-uid", "1.2.3.4"]) == 1
    assert "did not answer" in capsys.readouterr().err


def test_pull_on_a_terminal_draws_a_progress_bar(config_path, pacs):
    """Run `dicomgate pull` with a real pseudo-terminal as its stderr, as an admin would."""
    import os
    import pty

    spec = StudySpec(accession="ACC-TTY")
    for d in ct_instances(spec, series=2, per_series=3):
        pacs.upload(d)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*DICOMGATE, "--config", str(config_path), "pull", "--study-uid",
                             spec.study_uid],
                            stdin=follower, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    screen = b""
    try:
        while True:  # until the child closes the terminal (bounded by the pull's timeouts)
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child exited
                break
            if not chunk:
                break
            screen += chunk
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    assert "\r" in text and "6/6 instances" in text  # redrawn in place, ending complete
    assert b"complete, 6/6 instances" in out
    assert '"event"' not in text  # a person gets a bar, not JSON log lines
