"""Console test helpers: a real `dicomgate run` with [shim] and [console], state written
through the Store the way the features write it, HTTP calls to the console's API."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from dicomgate.sandbox.orthanc import free_port
from dicomgate.state import Store
from dicomgate.state.kinds import Retrieve
from dicomgate.state.names import ExamState
from tests.support import HOSPITAL_ID as HOSPITAL
from tests.support import gateway_toml, start_daemon, stop_daemon, wait_until, write_config
from tests.support.engines import open_store

TOKEN = "console-test-token-0123456789abcdef"
PATIENT = "欧阳娜娜"
ID_CARD = "33010219800101123X"  # a made-up number in the resident ID format
PHONE = "13912345678"


@dataclass
class Daemon:
    base: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen

    def store(self) -> Store:
        return open_store(self.state_dir)

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
    return (gateway_toml(tmp / "state", free_port(), bind="127.0.0.1", min_free_disk="1MB")
            + f'[shim]\nbind = "127.0.0.1"\nport = {port}\nallow = [{allow}]\n'
            + console + '\n[log]\nformat = "json"\n')


def start(tmp: Path, console: str, allow: str = '"127.0.0.0/8"') -> Daemon:
    port = free_port()
    config = write_config(tmp / "dicomgate.toml", config_text(tmp, port, console, allow))
    log = tmp / "daemon.log"
    proc = start_daemon(config, log)
    d = Daemon(f"http://127.0.0.1:{port}", tmp / "state", log, proc)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dicomgate run exited {proc.returncode}: {log.read_text()}")
        try:
            return requests.get(d.base + "/healthz", timeout=1).status_code > 0
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, 20, 0.1, "dicomgate run to answer", log.read_text)
    except AssertionError:
        stop(proc)
        raise
    return d


stop = stop_daemon


def add_exam(store: Store, accession: str, *, state: str = "synced",
             reason: str | None = None, exam_time: str = "2026-11-25T09:30:00+08:00") -> int:
    """An exam row as the report poller stores it, with personal data in its record."""
    record = {"accessionNo": accession, "hospitalId": HOSPITAL, "patientName": PATIENT,
              "idCardNo": ID_CARD, "phoneNumber": PHONE, "modality": "CT",
              "examItemName": "胸部CT平扫", "examTime": exam_time}
    with store.transaction():
        return store.exams.insert(hospital_id=HOSPITAL, accession_no=accession,
                                  state=ExamState(state), record=record, exam_time=exam_time,
                                  quarantine_reason=reason, warnings=[])


def dead_task(store: Store, study_uid: str, error: str, exam_id: int | None = None) -> int:
    """A retrieve taken and failed for good, as a worker leaves it (this daemon has no
    [pacs], so nothing handles retrieves: a retried one stays pending)."""
    task = Retrieve(study_uid=study_uid, reason="test")
    task_id = store.tasks.enqueue(task, exam_id=exam_id).id
    claimed = store.tasks.claim_key(task.kind, task.key(), "test-worker", 60)
    assert claimed is not None and claimed.id == task_id
    assert store.tasks.fail(task_id, "test-worker", error, retry_in=None) == "dead"
    return task_id
