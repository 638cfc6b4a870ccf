"""Two or more `dicomgate run` nodes sharing one PostgreSQL store, between a real Orthanc
PACS (which knows each node's AE), a real Orthanc DICOMweb cloud, the cloud report API and
a report view over unixODBC (SQLite driver). Each node has its own state dir, AE title,
DICOM port and shim port, as in a hospital."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.sandbox.hospital import VIEW_COLUMNS, demo_exams
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import Patient, StudySpec, ct_instances, sop_uid_of

HOSPITAL = "H33010200001"
TIMEZONE = "Asia/Shanghai"


@dataclass
class Exam:
    spec: StudySpec
    sop_uids: set[str]
    row: dict[str, Any]


def make_exams(n: int, start: int = 0) -> list[tuple[Exam, list[bytes]]]:
    """`n` small CT studies (2 slices) and their report rows, accession HA0001..."""
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    template = demo_exams(HOSPITAL, now)[0].row
    out = []
    for i in range(start, start + n):
        spec = StudySpec(accession=f"HA{i:04d}", patient=Patient(f"P{i:04d}", "Ha^Test",
                                                                  "19800101", "M",
                                                                  "ISO_IR 192"))
        data = ct_instances(spec, series=1, per_series=2, rows=32, cols=32, seed=i)
        # recent times: the leader's next poll window (overlap 10 min) holds them
        row = {**template, "accessionNo": spec.accession, "studyInstanceUid": spec.study_uid,
               "patientId": spec.patient.patient_id, "examTime": _ago(now, 3),
               "reportTime": _ago(now, 2), "auditTime": _ago(now, 1)}
        out.append((Exam(spec, {sop_uid_of(b) for b in data}, row), data))
    return out


def load(pacs: Orthanc, view_db: Path, n: int, start: int = 0) -> list[Exam]:
    """`n` exams: their images into the PACS, their report rows into the view."""
    made = make_exams(n, start)
    for _exam, data in made:
        for b in data:
            pacs.upload(b)
    add_view_rows(view_db, [e.row for e, _ in made])
    return [e for e, _ in made]


def _ago(now: dt.datetime, minutes: int) -> str:
    return (now - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def add_view_rows(db: Path, rows: list[dict[str, Any]]) -> None:
    import sqlite3

    c = sqlite3.connect(db)
    try:
        cols = ", ".join(f'"{k}" TEXT' for k in VIEW_COLUMNS)
        c.execute(f"CREATE TABLE IF NOT EXISTS pacs_exam_report ({cols})")
        c.execute("CREATE VIEW IF NOT EXISTS View_Pacs_Text_Info AS "
                  "SELECT * FROM pacs_exam_report")
        c.executemany(f"INSERT INTO pacs_exam_report VALUES ({', '.join('?' * len(VIEW_COLUMNS))})",
                      [tuple(r.get(k) for k in VIEW_COLUMNS) for r in rows])
        c.commit()
    finally:
        c.close()


class Node:
    def __init__(self, workdir: Path, name: str, aet: str, dicom_port: int, url: str,
                 pacs: Orthanc, cloud: Orthanc, api: CloudApi, view_db: Path):
        self.name, self.aet, self.dicom_port, self.url = name, aet, dicom_port, url
        self.http_port = free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "dicomgate.toml"
        self.log = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.config.write_text(f"""
[gateway]
hospital_id = "{HOSPITAL}"
state_dir = "{self.dir / 'state'}"
timezone = "{TIMEZONE}"
node_name = "{name}"

[state]
url = "{url}"

[dicom]
ae_title = "{aet}"
bind = "127.0.0.1"
port = {dicom_port}
min_free_disk = "1MB"

[pacs]
ae_title = "HOSPPACS"
host = "127.0.0.1"
port = {pacs.dicom_port}
echo_interval = "5s"
timeout = "10s"

[reports]
source = "view"
poll_interval = "2s"
overlap = "10m"
settle_delay = "1s"
initial_lookback = "1d"

[reports.view]
connection = "Driver=SQLite3;Database={view_db}"
name = "View_Pacs_Text_Info"

[images]
source = "dicom"

[upstream]
dicomweb_url = "{cloud.dicomweb_url}"
api_url = "{api.url}"
confirm_delay = "1s"
timeout = "10s"

[shim]
bind = "127.0.0.1"
port = {self.http_port}
allow = ["127.0.0.0/8"]

[qr]
film_url = "http://wx.imagingunion.com/iuweixin/iu_scanFilmInfo"
sm4_key = "0123456789abcdeffedcba9876543210"

[console]
refresh = "2s"

[tasks]
workers = 2
backoff_base = "1s"
backoff_max = "5s"
lease = "60s"
shutdown_grace = "3s"

[log]
format = "json"
""", encoding="utf-8")

    def start(self) -> Node:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dicomgate.cli", "--config", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait(self.answers, 60, f"node {self.name}'s /healthz to answer", self)
        return self

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        try:
            requests.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=5)
            return True
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """Power off: the daemon and its Portal AET child, no clean-up at all."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the SCP child too, if left
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def spool_files(self, study_uid: str | None = None) -> set[str]:
        """SOP Instance UIDs of the files in this node's spool (of one study, or all)."""
        root = self.dir / "state" / "spool"
        if study_uid is not None:
            root = root / study_uid
        return {p.stem for p in root.glob("**/*.dcm") if ".incoming" not in p.parts}

    def delete_images(self, exam: Exam) -> dict:
        """The PACS's deleteImage call (spec 4.5), sent to this node's shim."""
        r = requests.post(f"http://127.0.0.1:{self.http_port}/getway/reportAndFilm/api/"
                          "deleteImage", json={
                              "patientName": "Ha^Test", "accessionNo": exam.spec.accession,
                              "hospitalId": HOSPITAL, "operateDoctorName": "Dr^Del",
                              "operateDateTime": "2026-01-02 03:04:05"}, timeout=10)
        return r.json()

    def health(self) -> dict:
        return requests.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=10).json()

    def qrurl(self, exam: Exam) -> dict:
        r = requests.get(f"http://127.0.0.1:{self.http_port}/getway/reportAndFilm/api/qrurl",
                         params={"accessNumber": exam.spec.accession, "modality": "CT",
                                 "hospitalId": HOSPITAL}, timeout=10)
        return r.json()

    def console_nodes(self) -> list[dict]:
        r = requests.get(f"http://127.0.0.1:{self.http_port}/console/api/overview",
                         timeout=10)
        r.raise_for_status()
        return r.json()["health"]["nodes"]

    def status(self) -> dict:
        r = subprocess.run([sys.executable, "-m", "dicomgate.cli", "--config",
                            str(self.config), "status", "--json"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and (name is None or e.get("event") == name):
                out.append(e)
        return out

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- {self.name} ---\n" + "\n".join(lines[-n:])


def wait(cond: Callable[[], Any], timeout: float, what: str, *nodes: Node) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                         + "\n".join(n.tail() for n in nodes))


def delivered(cloud: Orthanc, api: CloudApi, exams: list[Exam]) -> list[str]:
    """Accession numbers whose every instance is in the cloud and whose report is held."""
    held = api.accessions()
    return [e.spec.accession for e in exams
            if e.spec.accession in held and e.sop_uids <= cloud.sop_uids(e.spec.study_uid)]


def report_pushes(api: CloudApi) -> dict[str, int]:
    """Applied /reports per accession number (replays under one Idempotency-Key excluded)."""
    out: dict[str, int] = {}
    with api.lock:
        for a in api.applied:
            if a["route"] == "/reports":
                acc = a["body"]["accessionNo"]
                out[acc] = out.get(acc, 0) + 1
    return out


def sql(url: str, query: str, params: tuple = ()) -> list[tuple]:
    """What the shared store holds, read by the test itself."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(query, params).fetchall()
