"""`dicomgate status` shows the worker lanes and what queued work waits for, from a running
daemon and from the state store alone (hospital IT reads `status` first)."""

from __future__ import annotations

import json
from pathlib import Path

from dicomgate.sandbox.orthanc import free_port
from dicomgate.state.kinds import Retrieve
from tests.support import (
    gateway_toml,
    run_cli,
    start_daemon,
    stop_daemon,
    toml_table,
    wait_until,
    write_config,
)
from tests.support.engines import open_store

UIDS = [f"1.2.826.0.1.3680043.8.498.77{n}" for n in range(3)]


def _config(tmp_path: Path) -> Path:
    # a PACS port nothing listens on: every C-MOVE fails to connect, retrieves wait for it
    return write_config(tmp_path / "dicomgate.toml", gateway_toml(
        tmp_path / "state", free_port(), bind="127.0.0.1", min_free_disk="1MB")
        + toml_table("pacs", ae_title="HOSPPACS", host="127.0.0.1", port=free_port(),
                     timeout="2s", echo_interval="1s", max_associations=2)
        + toml_table("tasks", workers=3, backoff_max="1h"))


def _status(config: Path) -> dict:
    r = run_cli("status", "--json", config=config)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _retrieve_lane(config: Path) -> dict:
    return _status(config)["workers"]["lanes"]["retrieve"]


def _logged_waiting(log: Path) -> int:
    """Retrieves the daemon's JSON log says wait for the PACS."""
    ids = set()
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line still being written, or not the daemon's
            continue
        if event.get("event") == "task.waiting" and event.get("waiting_for") == "PACS":
            ids.add(event["task_id"])
    return len(ids)


def _lane_row(text: str, lane: str) -> str:
    """The lane's line in the text's workers table (the tasks table has a `retrieve` row
    too)."""
    section = text.split("\nworkers:", 1)[1].split("\n\n", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(lane + " "))


def test_status_lists_retrieves_waiting_for_the_pacs(tmp_path: Path):
    config = _config(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    store = open_store(tmp_path / "state")
    for uid in UIDS:
        store.tasks.enqueue(Retrieve(study_uid=uid))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log=log)
    try:
        # the daemon's log first: polling `status` (a CLI process each time) while the
        # daemon starts takes the CPU the daemon needs to start
        wait_until(lambda: _logged_waiting(log) == 3, timeout=30, interval=0.2,
                   what="the daemon to log 3 retrieves waiting for the PACS",
                   detail=lambda: log.read_text()[-3000:])
        lane = wait_until(lambda: (x := _retrieve_lane(config))["waiting"].get("PACS") == 3
                          and x, timeout=30, interval=0.5,
                          what="status to show 3 retrieves waiting for the PACS",
                          detail=lambda: log.read_text()[-3000:])
        data = _status(config)
        assert data["daemon"]["running"] and data["workers"]["daemon_running"]
        assert "note" not in data["workers"]
        assert lane["threads"] == 2 and lane["kinds"] == ["retrieve"]  # pacs.max_associations
        assert lane["busy"] == 0 and lane["due"] == 0 and lane["later"] == 3
        text = run_cli("status", config=config).stdout
        assert "\nworkers:\n" in text and "not running" not in text.split("workers:")[1][:80]
        row = _lane_row(text, "retrieve")
        assert row.split()[:5] == ["retrieve", "2", "0", "0", "3"], row
        assert "3 for PACS" in row, text
    finally:
        stop_daemon(proc)
    # the daemon stopped: the state store still tells what waits, and says no daemon runs
    store.tasks.enqueue(Retrieve(study_uid="1.2.826.0.1.3680043.8.498.779"))
    data = _status(config)
    lane = data["workers"]["lanes"]["retrieve"]
    assert not data["workers"]["daemon_running"]
    assert "daemon is not running" in data["workers"]["note"]
    assert lane["waiting"] == {"PACS": 3} and lane["due"] == 1 and lane["busy"] == 0
    text = run_cli("status", config=config).stdout
    assert "workers:  (the daemon is not running" in text, text
    row = _lane_row(text, "retrieve")
    assert row.split()[:5] == ["retrieve", "2", "0", "1", "3"] and "3 for PACS" in row, text
