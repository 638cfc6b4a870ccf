"""`dicomgate run` with the Portal AET in a child process: supervised, restarted after a
crash (reported on /healthz meanwhile), stopped with the daemon."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from dicomgate.sandbox.orthanc import free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances
from tests.support import engines, gateway_toml, start_daemon, toml_table, write_config

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")


@pytest.fixture
def daemon(tmp_path: Path):
    yield from _daemon(tmp_path)


@pytest.fixture
def daemon2(tmp_path: Path):
    """Two Portal AET processes on the one port."""
    yield from _daemon(tmp_path, scp_processes=2)


def _daemon(tmp_path: Path, scp_processes: int = 1):
    dicom_port, http_port = free_port(), free_port()
    extra = {"scp_processes": scp_processes} if scp_processes > 1 else {}
    config = write_config(tmp_path / "dicomgate.toml", (
        gateway_toml(tmp_path / "state", dicom_port, bind="127.0.0.1", min_free_disk="1MB",
                     allowed_calling_aets=["MODALITY1"], **extra)
        + toml_table("shim", bind="127.0.0.1", port=http_port, allow=["127.0.0.1/32"])
        + toml_table("log", format="json")))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    d = Daemon(proc, log, dicom_port, f"http://127.0.0.1:{http_port}/healthz",
               tmp_path / "state" / "state.db")
    try:
        d.wait_health(200, timeout=30)
        yield d
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in d.scp_pids():  # never leave a child behind, whatever failed
            _kill(pid)


class Daemon:
    def __init__(self, proc, log: Path, dicom_port: int, healthz: str, db: Path):
        self.proc, self.log, self.dicom_port, self.healthz, self.db = (
            proc, log, dicom_port, healthz, db)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]

    def scp_pids(self) -> list[int]:
        return [e["pid"] for e in self.events()
                if e["event"] in ("scp.process_started", "scp.process_restarted")]

    def health(self) -> tuple[int, dict]:
        r = requests.get(self.healthz, timeout=5)
        return r.status_code, r.json()

    def wait_health(self, code: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                got, body = self.health()
                if got == code:
                    return body
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/healthz never answered {code}:\n{self.log.read_text()}")

    def store(self, path: str) -> None:
        r = subprocess.run(["storescu", "-aet", "MODALITY1", "-aec", "DICOMGATE", "127.0.0.1",
                            str(self.dicom_port), path], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr

    def recorded(self) -> tuple[int, int]:
        """(instances, upload tasks) in the state store."""
        state_dir = self.db.parent
        return (engines.read(state_dir, "SELECT COUNT(*) FROM instances")[0][0],
                engines.read(state_dir, "SELECT COUNT(*) FROM tasks WHERE kind='upload'")[0][0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _kill(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"SCP process {pid} still running"
        time.sleep(0.05)


def test_scp_child_killed_is_reported_restarted_and_stores_again(daemon):
    [first] = daemon.scp_pids()
    assert first != daemon.proc.pid
    daemon.store(CT)
    # recorded before the response; no [upstream] in this daemon: no upload task queued
    assert daemon.recorded() == (1, 0)

    os.kill(first, signal.SIGKILL)
    body = daemon.wait_health(503, timeout=5)
    assert "storage SCP process is not running" in body["checks"]["storage SCP"]
    assert "killed by SIGKILL" in body["checks"]["storage SCP"]
    daemon.wait_health(200, timeout=20)
    events = daemon.events()
    died = next(e for e in events if e["event"] == "scp.process_died")
    assert died["exit"] == "killed by SIGKILL" and died["attempt"] == 1
    [_, second] = daemon.scp_pids()
    assert second != first and _alive(second)
    daemon.store(MR)
    assert daemon.recorded() == (2, 0)

    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    assert time.monotonic() - t0 < 15
    _wait_gone(second, 5)
    names = [e["event"] for e in daemon.events()]
    assert "scp.stopped" in names and names[-1] == "daemon.stopped"
    assert "Traceback" not in daemon.log.read_text()


def test_scp_child_exits_when_the_daemon_is_killed(daemon):
    [child] = daemon.scp_pids()
    daemon.proc.kill()
    daemon.proc.wait(10)
    _wait_gone(child, 15)  # its stdin closed: it stops by itself, no orphan on the port
    names = [e["event"] for e in daemon.events()]
    assert "scp.stopped" in names


def test_sigterm_to_daemon_and_child_together_is_a_clean_stop(daemon):
    """What `systemctl stop` does (KillMode=control-group): no crash reported, no restart."""
    [child] = daemon.scp_pids()
    os.kill(child, signal.SIGTERM)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    _wait_gone(child, 5)
    names = [e["event"] for e in daemon.events()]
    assert "scp.stopped" in names and names[-1] == "daemon.stopped"
    assert "scp.process_died" not in names and "scp.process_restarted" not in names


def test_two_scp_processes_share_the_port_and_cover_for_each_other(daemon2, tmp_path):
    from dicomgate.sandbox.studies import StudySpec, ct_instances
    from tests.support.studies import write_study

    files = write_study(ct_instances(StudySpec("ACC-TWO"), series=1, per_series=12),
                        tmp_path / "study")
    pids = daemon2.scp_pids()
    assert len(pids) == 2 and len(set(pids)) == 2 and all(_alive(p) for p in pids)
    # six associations at once, all answered and recorded
    procs = [subprocess.Popen(["storescu", "-aet", "MODALITY1", "-aec", "DICOMGATE",
                               "127.0.0.1", str(daemon2.dicom_port), str(f)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for f in files[:6]]
    for p in procs:
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0, out
    assert daemon2.recorded()[0] == 6

    # one process killed: the other keeps the port answering while it restarts
    os.kill(pids[0], signal.SIGKILL)
    _wait_gone(pids[0], 5)
    for f in files[6:9]:
        daemon2.store(str(f))
    assert daemon2.recorded()[0] == 9
    daemon2.wait_health(200, timeout=20)
    restarted = daemon2.scp_pids()[2:]
    assert len(restarted) == 1 and _alive(restarted[0])
    for f in files[9:]:
        daemon2.store(str(f))
    assert daemon2.recorded()[0] == 12
    assert "Traceback" not in daemon2.log.read_text()


def _pynetdicom_sender(port: int, datasets: list, acked: list[str], stop: threading.Event,
                       sent: list[str]) -> None:
    """C-STOREs `datasets` on one association; the SOP UIDs answered 0x0000 go to `acked`."""
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGATE")
    assert assoc.is_established
    try:
        for ds in datasets:
            if stop.is_set() or not assoc.is_established:
                return
            sent.append(ds.SOPInstanceUID)
            status = assoc.send_c_store(ds)
            if status and status.Status == 0x0000:
                acked.append(ds.SOPInstanceUID)
    except Exception:  # the association died with the Portal AET: what was acked counts
        return
    finally:
        if assoc.is_established:
            assoc.release()


def _storescu_acked(output: str, files: list[Path]) -> list[str]:
    """The files storescu -v reports a success response for (it sends them in order)."""
    acked, current = [], -1
    for line in output.splitlines():
        if "Sending Store Request" in line:
            current += 1
        elif "Received Store Response (Success)" in line and current >= 0:
            acked.append(files[current].stem)
    return acked


def test_scp_child_killed_mid_association_loses_no_acknowledged_instance(daemon, tmp_path):
    """SIGKILL of the Portal AET while four senders (three pynetdicom, one storescu) are
    mid-association: every instance whose C-STORE was answered success is in the store
    afterwards, with its file, as answered."""
    [pid] = daemon.scp_pids()
    spec = StudySpec(accession="CRASH1")
    data = [dcmread(io.BytesIO(b)) for b in ct_instances(spec, series=1, per_series=240)]
    files = []
    for ds in data[180:]:
        path = tmp_path / "storescu" / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path)
        files.append(path)
    acked: list[list[str]] = [[], [], []]
    sent: list[list[str]] = [[], [], []]
    stop = threading.Event()
    threads = [threading.Thread(target=_pynetdicom_sender, args=(
        daemon.dicom_port, data[i * 60:(i + 1) * 60], acked[i], stop, sent[i]))
        for i in range(3)]
    scu = subprocess.Popen(["storescu", "-v", "-aet", "MODALITY1", "-aec", "DICOMGATE",
                            "127.0.0.1", str(daemon.dicom_port), *map(str, files)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(map(len, acked)) < 40:  # well into every association
        assert time.monotonic() < deadline and scu.poll() is None, "senders never got going"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(30)
    out, _ = scu.communicate(timeout=30)
    assert any(len(a) < 60 for a in acked), "the kill came after the senders were done"
    answered = [u for a in acked for u in a] + _storescu_acked(out, files)
    daemon.wait_health(200, timeout=20)  # restarted: it cleaned up, the store opens
    rows = {r[0]: (r[1], r[2]) for r in engines.read(
        daemon.db.parent, "SELECT sop_uid, path, size FROM instances")}
    lost = [u for u in answered if u not in rows]
    assert not lost, f"{len(lost)} of {len(answered)} acknowledged instances not recorded"
    for uid in answered:
        path, size = rows[uid]
        assert Path(path).stat().st_size == size


def test_sigterm_to_the_child_alone_keeps_it_answering_until_the_daemon_stops_it(daemon):
    """systemd signals every process of the service; the Portal AET must go on answering
    the PACS (the daemon hands its retrieves back first) and stop when the daemon says so."""
    [child] = daemon.scp_pids()
    os.kill(child, signal.SIGTERM)
    daemon.store(CT)  # still answered, and recorded
    assert daemon.recorded()[0] == 1
    assert _alive(child)
    said = [e for e in daemon.events() if e["event"] == "scp.signal"]
    assert said and said[0]["signal"] == "SIGTERM" and "daemon says so" in said[0]["effect"]
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    _wait_gone(child, 5)
    names = [e["event"] for e in daemon.events()]
    assert "scp.stopped" in names and "scp.process_died" not in names
