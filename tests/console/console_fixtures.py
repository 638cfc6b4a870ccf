"""Console test helpers: a real `dicomgate run` with [shim] and [console], state written
through the Store the way the features write it, HTTP calls to the console's API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from dicomgate.sandbox.orthanc import free_port
from dicomgate.state import Store

HOSPITAL = "H33010200001"
TOKEN = "console-test-token-0123456789abcdef"
PATIENT = "欧阳娜娜"
ID_CARD = "33010219800101123X"  # a made-up number in the resident ID format
PHONE = "13912345678"
_MAIN = "import sys; from dicomgate.cli import main; sys.exit(main())"


@dataclass
class Daemon:
    base: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen

    def store(self) -> Store:
        return Store(self.state_dir / "state.db")

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.base + path, timeout=10, **kw)

    def act(self, name: str, body: dict, token: str | None = TOKEN, operator: str = "王工",
            headers: dict | None = None) -> requests.Response:
        h = {"X-Console": "1", "X-Operator": requests.utils.quote(operator),
             "Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        return requests.post(f"{self.base}/console/api/actions/{name}", json=body, headers=h,
                             timeout=30)


def config_text(tmp: Path, port: int, console: str, allow: str = '"127.0.0.0/8"') -> str:
    return f"""
[gateway]
hospital_id = "{HOSPITAL}"
state_dir = "{tmp / 'state'}"
[dicom]
ae_title = "DICOMGATE"
bind = "127.0.0.1"
port = {free_port()}
min_free_disk = "1MB"
[shim]
bind = "127.0.0.1"
port = {port}
allow = [{allow}]
{console}
[log]
format = "json"
"""


def start(tmp: Path, console: str, allow: str = '"127.0.0.0/8"') -> Daemon:
    port = free_port()
    config = tmp / "dicomgate.toml"
    config.write_text(config_text(tmp, port, console, allow), encoding="utf-8")
    log = tmp / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _MAIN, "--config", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    d = Daemon(f"http://127.0.0.1:{port}", tmp / "state", log, proc)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dicomgate run exited {proc.returncode}: {log.read_text()}")
        try:
            requests.get(d.base + "/healthz", timeout=1)
            return d
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"no answer within 20 s: {log.read_text()}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def add_exam(store: Store, accession: str, *, state: str = "synced",
             reason: str | None = None, exam_time: str = "2026-11-25T09:30:00+08:00") -> int:
    """An exam row as the report poller stores it, with personal data in its record."""
    record = {"accessionNo": accession, "hospitalId": HOSPITAL, "patientName": PATIENT,
              "idCardNo": ID_CARD, "phoneNumber": PHONE, "modality": "CT",
              "examItemName": "胸部CT平扫", "examTime": exam_time}
    with store.exams.batch() as conn:
        return store.exams.insert(conn, hospital_id=HOSPITAL, accession_no=accession,
                                  state=state, record=record, exam_time=exam_time,
                                  quarantine_reason=reason, warnings=[])


def dead_task(store: Store, kind: str, key: str, error: str, exam_id: int | None = None) -> int:
    """A task taken and failed for good, as a worker leaves it."""
    task_id = store.tasks.enqueue(kind, key, {"note": "test"}, exam_id=exam_id).id
    claimed = store.tasks.claim_key(kind, key, "test-worker", 60)
    assert claimed is not None and claimed.id == task_id
    assert store.tasks.fail(task_id, "test-worker", error, retry_in=None) == "dead"
    return task_id
