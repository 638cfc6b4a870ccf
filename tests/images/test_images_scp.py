"""The Portal AET as a receiver: allow-list, called AE, disk floor, malformed data, replace."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from images_helpers import GW_AET, images_config, start_gateway
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification
from structlog.testing import capture_logs

from dicomgate.config.load import load
from dicomgate.sandbox.studies import StudySpec, ct_instances
from tests.support import run_cli


def _associate(gw, calling: str = "MODALITY1", called: str = GW_AET):
    ae = AE(ae_title=calling)
    # explicit first: the Portal AET takes the sender's first syntax, and the chunked send
    # of a file as it is needs its own (explicit) syntax
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", gw.config.dicom.port, ae_title=called)


def _ct(n: int = 1, seed: int = 0) -> list[bytes]:
    return ct_instances(StudySpec(accession="S1"), series=1, per_series=n, seed=seed)


def test_allowed_sender_stores_and_echo(gateway):
    data = _ct(2)
    assoc = _associate(gateway)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    for d in data:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(d))).Status == 0x0000
    assoc.release()
    sops = {pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID for d in data}
    rows = [gateway.store.instances.get(s) for s in sops]
    assert all(r is not None and r.state == "received" and Path(r.path).exists() for r in rows)
    assert all(r.source == "dicom:MODALITY1" for r in rows)


def test_recorded_size_and_sha256_are_those_of_the_stored_file(gateway):
    """The hash is taken while pynetdicom writes the PDVs: check it against the file."""
    data = ct_instances(StudySpec(accession="S2"), series=1, per_series=3, rows=256, cols=256)
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage)
    ae.maximum_pdu_size = 16384  # ~130 KB datasets arrive as many PDVs
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", gateway.config.dicom.port, ae_title=GW_AET)
    for d in data:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(d))).Status == 0x0000
    assoc.release()
    for d in data:
        row = gateway.store.instances.get(pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID)
        stored = Path(row.path).read_bytes()
        assert row.size == len(stored) > len(d) // 2
        assert row.sha256 == hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("calling,called,reason", [
    ("INTRUDER", GW_AET, "calling AE INTRUDER is not allowed"),
    ("MODALITY1", "SOMEONEELSE", "called AE SOMEONEELSE is not this gateway's AE"),
])
def test_association_rejected_with_reason_logged(gateway, calling, called, reason):
    with capture_logs() as logs:
        assoc = _associate(gateway, calling=calling, called=called)
        assert not assoc.is_established
        assert assoc.is_rejected
        # logged by the SCP's association thread once the rejection is sent: the sender
        # may hear it first
        deadline = time.monotonic() + 5
        while not (events := [e for e in logs if e["event"] == "association.rejected"]):
            assert time.monotonic() < deadline, "association rejection not logged"
            time.sleep(0.01)
    assert events and reason in events[0]["reason"]
    assert events[0]["calling_aet"] == calling
    # recorded too: a C-MOVE failing meanwhile is explained by it, `status` shows it
    deadline = time.monotonic() + 5
    while not (recorded := gateway.store.dicom_events.since(0, ("association_rejected",))):
        assert time.monotonic() < deadline, "association rejection not recorded"
        time.sleep(0.05)
    assert recorded[0].calling_aet == calling and reason in recorded[0].reason
    shown = run_cli("status", config=gateway.config.path)
    assert f"last from {calling}: {reason}" in shown.stdout, shown.stdout + shown.stderr


def test_disk_floor_answers_a700_and_writes_nothing(tmp_path, gw_port, pacs):
    cfg = load(images_config(tmp_path / "floor.toml", state_dir=tmp_path / "state",
                            port=gw_port, pacs_port=pacs.dicom_port, min_free_disk="900TB"))
    gw = start_gateway(cfg)
    try:
        assoc = _associate(gw)
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(_ct(1)[0])))
        assoc.release()
        assert status.Status == 0xA700
        assert not list(gw.spool.root.rglob("*.dcm"))
        assert gw.store.instances.instance_state_counts() == {}
        assert gw.scp.health() and "min_free_disk" in gw.scp.health()
    finally:
        gw.scp.stop()
        gw.store.close()


def test_malformed_dataset_quarantined_next_one_stored(gateway, tmp_path):
    good = _ct(1)[0]
    ds = pydicom.dcmread(io.BytesIO(good))
    # A valid File Meta header followed by bytes that are no dataset at all.
    bad = tmp_path / "bad.dcm"
    meta_end = good.index(b"\x08\x00", 132 + 12)  # first group 0008 tag after the meta
    bad.write_bytes(good[:meta_end] + b"\x08\x00\x18\x00UI\xff\x7fgarbage" * 3)
    assoc = _associate(gateway)
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
    try:
        status_bad = assoc.send_c_store(bad)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    status_good = assoc.send_c_store(ds)
    assoc.release()
    assert status_bad.Status == 0xC000
    assert status_good.Status == 0x0000
    notes = list(gateway.spool.quarantine_dir.glob("*.json"))
    assert len(notes) == 1
    note = json.loads(notes[0].read_text())
    assert note["sop_uid"] == ds.SOPInstanceUID and note["reason"]
    assert notes[0].with_suffix(".dcm").exists()
    assert gateway.store.instances.get(ds.SOPInstanceUID).state == "received"


def test_same_uid_same_bytes_noop_different_bytes_replaced(gateway):
    data = _ct(1)[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    assoc = _associate(gateway)
    assert assoc.send_c_store(ds).Status == 0x0000
    first = gateway.store.instances.get(ds.SOPInstanceUID)
    assert assoc.send_c_store(ds).Status == 0x0000
    assert gateway.store.instances.get(ds.SOPInstanceUID).updated_at == first.updated_at
    ds.StudyDescription = "CT CHEST corrected"
    with capture_logs() as logs:
        assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    second = gateway.store.instances.get(ds.SOPInstanceUID)
    assert second.sha256 != first.sha256
    assert "corrected" in str(pydicom.dcmread(second.path).StudyDescription)
    assert any(e["event"] == "instance.replaced" for e in logs)


def test_disk_floor_refuses_then_accepts_again_when_space_returns(tmp_path, gw_port, pacs):
    """A real small file system (tmpfs): fill it below the floor, then free it."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=True)
    gw = None
    try:
        cfg = load(images_config(tmp_path / "floor.toml", state_dir=disk / "state",
                                port=gw_port, pacs_port=pacs.dicom_port, min_free_disk="16MB"))
        gw = start_gateway(cfg)
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (20 * 1024 * 1024))  # leaves < 16 MB free
        first, second = _ct(2)
        assoc = _associate(gw)
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(first))).Status == 0xA700
        assert not list(gw.spool.root.rglob("*.dcm"))
        ballast.unlink()  # space returns: the same association stores again
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(second))).Status == 0x0000
        assoc.release()
        assert len(list(gw.spool.root.rglob("*.dcm"))) == 1
        assert gw.scp.health() is None
    finally:
        if gw is not None:
            gw.scp.stop()
            gw.store.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.sqlite_only  # another writer holds SQLite's file lock
def test_store_locked_refuses_0xa700_on_every_association_then_stores(gateway):
    """While the state store cannot be written (another writer holds its lock), concurrent
    C-STOREs, recorded in groups, are each refused 0xA700 and nothing of them is kept;
    once it can, the same associations store again."""
    gateway.store.db.busy_timeout = 0.3  # the writer's connection is opened from now on
    first, second = _ct(8, seed=3)[:4], _ct(8, seed=4)[4:]
    assocs = [_associate(gateway) for _ in range(4)]
    lock = sqlite3.connect(gateway.store.db.path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(4) as pool:
            refused = list(pool.map(lambda a, d: a.send_c_store(
                pydicom.dcmread(io.BytesIO(d))).Status, assocs, first))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert refused == [0xA700] * 4
    assert gateway.store.instances.instance_state_counts() == {}
    assert not list(gateway.spool.root.rglob("*.dcm"))
    stored = [a.send_c_store(pydicom.dcmread(io.BytesIO(d))).Status
              for a, d in zip(assocs, second, strict=True)]
    for a in assocs:
        a.release()
    assert stored == [0x0000] * 4
    assert gateway.store.instances.instance_state_counts() == {"received": 4}


@pytest.mark.sqlite_only  # another writer holds SQLite's file lock
def test_instances_arriving_during_a_commit_share_the_next_one(gateway):
    """Group commit: while one transaction waits (here on another writer's lock), the
    C-STOREs of three more associations queue; they are committed together, and each is
    answered success only then."""
    recorder = gateway.scp.ingest.recorder
    data = _ct(4, seed=9)
    assocs = [_associate(gateway) for _ in range(4)]
    instances, transactions = recorder.instances, recorder.transactions
    lock = sqlite3.connect(gateway.store.db.path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(lambda a, d: a.send_c_store(
                pydicom.dcmread(io.BytesIO(d))).Status, a, d) for a, d in zip(
                assocs, data, strict=True)]
            time.sleep(1.5)  # every C-STORE has arrived and waits for its record
            assert not any(a.done() for a in answers), "answered before it was recorded"
            lock.execute("ROLLBACK")
            statuses = [a.result(timeout=30) for a in answers]
    finally:
        lock.close()
    for a in assocs:
        a.release()
    assert statuses == [0x0000] * 4
    assert gateway.store.instances.instance_state_counts() == {"received": 4}
    assert recorder.instances - instances == 4
    assert recorder.transactions - transactions < 4  # at least two shared one
