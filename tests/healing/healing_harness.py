"""`dicomgate run` as a subprocess between a real Orthanc PACS and a real Orthanc DICOMweb
cloud, for the fault-injection tests of issue 14. Short timeouts and backoffs keep each
test to seconds; every line the daemon writes must parse as JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state import Store
from dicomgate.state.kinds import Retrieve
from tests.support import engines
from tests.support.engines import open_store, state_toml

MAIN = "import sys; from dicomgate.cli import main; sys.exit(main())"
GW_AET, PACS_AET = "DICOMGATE", "HOSPPACS"


def config_text(state_dir: Path, dicom_port: int, http_port: int, pacs: Orthanc,
                cloud: Orthanc, api: CloudApi, **over: Any) -> str:
    o = {"min_free_disk": "1MB", "pacs_timeout": "3s", "move_timeout": "1h",
         "max_associations": 2, "workers": 2, "max_attempts": 3, "backoff_max": "3s",
         "concurrency": 2, **over}
    return f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{state_dir}"
[dicom]
ae_title = "{GW_AET}"
bind = "127.0.0.1"
port = {dicom_port}
min_free_disk = "{o['min_free_disk']}"
allowed_calling_aets = ["MODALITY1"]
network_timeout = "10s"
[pacs]
ae_title = "{PACS_AET}"
host = "127.0.0.1"
port = {pacs.dicom_port}
echo_interval = "1s"
timeout = "{o['pacs_timeout']}"
move_timeout = "{o['move_timeout']}"
max_associations = {o['max_associations']}
[upstream]
dicomweb_url = "{cloud.dicomweb_url}"
api_url = "{api.url}"
confirm_delay = "1s"
timeout = "10s"
concurrency = {o['concurrency']}
[shim]
bind = "127.0.0.1"
port = {http_port}
allow = ["127.0.0.1/32"]
[tasks]
workers = {o['workers']}
max_attempts = {o['max_attempts']}
backoff_base = "1s"
backoff_max = "{o['backoff_max']}"
lease = "30s"
shutdown_grace = "3s"
[log]
level = "info"
format = "json"
{state_toml(state_dir)}"""


class Daemon:
    def __init__(self, workdir: Path, state_dir: Path, dicom_port: int, pacs: Orthanc,
                 cloud: Orthanc, api: CloudApi, **over: Any):
        self.dicom_port, self.http_port = dicom_port, free_port()
        self.state_dir = state_dir
        self.config = workdir / "dicomgate.toml"
        self.config.write_text(config_text(state_dir, self.dicom_port, self.http_port,
                                           pacs, cloud, api, **over), encoding="utf-8")
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self._store: Store | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Daemon:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", MAIN, "--config", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT)
        self.wait(lambda: self._healthz_answers(), 30, "the daemon's /healthz to answer")
        self.wait(lambda: self.scp_pids(), 30, "the SCP process to start")
        return self

    def stop(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in self.scp_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.state_dir)
        return self._store

    # -- observing --------------------------------------------------------------------------
    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def events(self) -> list[dict]:
        out = []
        for line in self.lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events() if e.get("event") == name]

    def not_json(self) -> list[str]:
        bad = []
        for line in self.lines():
            try:
                obj = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if not isinstance(obj, dict) or " " in str(obj.get("event", " ")):
                bad.append(line)
        return bad

    def scp_pids(self) -> list[int]:
        return [e["pid"] for e in self.events()
                if e.get("event") in ("scp.process_started", "scp.process_restarted")]

    def health(self) -> tuple[int, dict]:
        r = requests.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=10)
        return r.status_code, r.json()

    def _healthz_answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        try:
            self.health()
            return True
        except requests.RequestException:
            return False

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.lines()[-n:])

    def wait(self, cond: Callable[[], Any], timeout: float, what: str,
             every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = cond()
            if got:
                return got
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.tail()}")

    # -- acting -----------------------------------------------------------------------------
    def retrieve(self, study_uid: str) -> int:
        return self.store.tasks.enqueue(Retrieve(study_uid=study_uid, reason="test"),
                                        study_uid=study_uid).id

    def task(self, task_id: int):
        return self.store.tasks.get(task_id)

    def instances_received(self, study_uid: str) -> int:
        return engines.read(self.state_dir, "SELECT COUNT(*) FROM instances WHERE study_uid=?",
                            (study_uid,))[0][0]

    def storescu(self, paths: list[Path]) -> None:
        r = subprocess.run(["storescu", "-aet", "MODALITY1", "-aec", GW_AET, "127.0.0.1",
                            str(self.dicom_port), *map(str, paths)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr


def study_at(pacs: Orthanc, accession: str, count: int, rows: int = 64
             ) -> tuple[str, set[str]]:
    """A synthetic CT study of `count` instances (two series) stored in the PACS: its
    Study Instance UID and SOP Instance UIDs."""
    spec = StudySpec(accession=accession)
    data = ct_instances(spec, series=2, per_series=count // 2, rows=rows, cols=rows)
    for d in data:
        pacs.upload(d)
    return spec.study_uid, {sop_uid_of(d) for d in data}


def sigstop(o: Orthanc) -> None:
    assert o.proc is not None
    os.kill(o.proc.pid, signal.SIGSTOP)


def sigcont(o: Orthanc) -> None:
    if o.proc is not None and o.proc.poll() is None:
        os.kill(o.proc.pid, signal.SIGCONT)
