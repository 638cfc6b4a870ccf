"""Repair ladder, failed sub-operations and C-MOVE failures explained from what the Portal AET
saw (issue 13 points 3, 4, 6), against pynetdicom's qrscp app and Orthanc."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from images_helpers import GW_AET, PACS_AET, images_config, start_gateway
from pacs_peers import QrScp, seed_qrscp
from study_only_pacs import StudyOnlyPacs

from dicomgate.config.load import load
from dicomgate.images.retrieve import present_sop_uids
from dicomgate.sandbox.orthanc import free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.tasks import Fatal, RetryLater
from tests.support import run_cli
from tests.support.studies import write_study

PRIVATE_CLASS = "1.3.12.2.1107.5.9.1"  # Siemens CSA Non-Image Storage: private


def _config(tmp_path: Path, gw_port: int, pacs_port: int, pacs_aet: str = PACS_AET) -> Path:
    cfg = images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state", port=gw_port,
                       pacs_port=pacs_port)
    if pacs_aet != PACS_AET:
        cfg.write_text(cfg.read_text().replace(f'ae_title = "{PACS_AET}"',
                                               f'ae_title = "{pacs_aet}"'))
    return cfg


@pytest.fixture
def qrscp(tmp_path, gw_port):
    peer = QrScp(tmp_path / "qr", PACS_AET, {GW_AET: ("127.0.0.1", gw_port)}).start()
    yield peer
    peer.stop()


@pytest.fixture
def gw_factory():
    made = []

    def make(cfg: Path):
        gw = start_gateway(load(cfg))
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.scp.stop()
        gw.store.close()


def _repair_steps(gw, study_uid):
    return [e.reason for e in gw.store.dicom_events.of_study(study_uid) if e.kind == "repair_step"]


def test_qrscp_refuses_uid_lists_ladder_asks_one_by_one(tmp_path, qrscp, gw_port, gw_factory):
    spec = StudySpec(accession="LAD1")
    data = ct_instances(spec, series=2, per_series=3)
    qrscp.load(write_study(data, tmp_path / "in"))
    cfg = _config(tmp_path, gw_port, qrscp.port)
    gw = gw_factory(cfg)
    assert "complete, 6 instances" in gw.retriever.run(study_uid=spec.study_uid)
    rows = gw.store.instances.of_study(spec.study_uid)
    series = rows[0].series_uid
    lost = [r for r in rows if r.series_uid == series][:2]  # two of one series
    for r in lost:
        Path(r.path).unlink()
    result = gw.retriever.run(study_uid=spec.study_uid)
    assert "complete, 6 instances, 2 moved" in result
    steps = _repair_steps(gw, spec.study_uid)
    assert len(steps) == 2, steps
    assert steps[0].startswith("repair image-list: asked for 2, 0 moved, 2 still missing")
    assert "0xA801" in steps[0]  # qrscp's answer to a list of UIDs
    assert steps[1] == "repair image-each: asked for 2, 2 moved, complete"
    shown = run_cli("study", "show", spec.study_uid, config=cfg)
    assert shown.returncode == 0, shown.stderr
    assert "repair image-each: asked for 2, 2 moved, complete" in shown.stdout


@pytest.mark.parametrize(("move_levels", "expected_steps"), [
    (("SERIES", "STUDY"), ["image-list", "image-each", "series"]),
    (("STUDY",), ["image-list", "image-each", "series", "study"])])
def test_ladder_goes_as_coarse_as_the_pacs_needs(tmp_path, gw_port, gw_factory, move_levels,
                                                 expected_steps):
    spec = StudySpec(accession="LAD2")
    data = ct_instances(spec, series=2, per_series=2)
    peer = StudyOnlyPacs(PACS_AET, free_port(), {GW_AET: ("127.0.0.1", gw_port)},
                         find_levels=("STUDY", "SERIES", "IMAGE"), move_levels=move_levels)
    for d in data:
        peer.add(d)
    peer.start()
    try:
        gw = gw_factory(_config(tmp_path, gw_port, peer.port))
        gw.retriever.run(study_uid=spec.study_uid)
        lost = gw.store.instances.of_study(spec.study_uid)[:1]
        Path(lost[0].path).unlink()
        peer.moves.clear()
        assert "complete, 4 instances" in gw.retriever.run(study_uid=spec.study_uid)
        steps = [s.split(":")[0].removeprefix("repair ")
                 for s in _repair_steps(gw, spec.study_uid)]
        assert steps == expected_steps
        assert peer.moves[-1] == expected_steps[-1].upper()
        assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}
    finally:
        peer.stop()


def test_ladder_exhausted_gives_an_actionable_detail(tmp_path, gw_port, gw_factory):
    spec = StudySpec(accession="LAD3")
    data = ct_instances(spec, series=1, per_series=2)
    peer = StudyOnlyPacs(PACS_AET, free_port(), {GW_AET: ("127.0.0.1", gw_port)},
                         find_levels=("STUDY", "SERIES", "IMAGE"), move_levels=())
    for d in data:
        peer.add(d)
    peer.start()
    try:
        gw = gw_factory(_config(tmp_path, gw_port, peer.port))
        with pytest.raises(RetryLater) as err:
            gw.retriever.run(study_uid=spec.study_uid)
        msg = str(err.value)
        assert "2 instances that PACS HOSPPACS" in msg
        assert "did not arrive at any C-MOVE level" in msg
        assert "dicomgate study show" in msg
        study = gw.store.instances.study(spec.study_uid)
        assert study["state"] == "incomplete"
        assert [s["name"] for s in study["detail"]["repair"]] == [
            "image-list", "image-each", "series", "study"]
    finally:
        peer.stop()


def _private_instance(spec: StudySpec) -> bytes:
    data = ct_instances(spec, series=1, per_series=1, seed=7)[0]
    import io

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PRIVATE_CLASS
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_failed_suboperation_is_logged_with_the_portal_aets_reason(tmp_path, qrscp, gw_port,
                                                                   gw_factory):
    spec = StudySpec(accession="FAIL1")
    good = ct_instances(spec, series=1, per_series=2)
    bad = _private_instance(spec)
    qrscp.load(write_study(good, tmp_path / "in"))
    seed_qrscp(qrscp, write_study([bad], tmp_path / "private"))
    cfg = _config(tmp_path, gw_port, qrscp.port)
    gw = gw_factory(cfg)
    with pytest.raises(RetryLater, match="1 instances that PACS HOSPPACS"):
        gw.retriever.run(study_uid=spec.study_uid)
    assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in good}
    events = gw.store.dicom_events.of_study(spec.study_uid)
    failed = [e for e in events if e.kind == "suboperation_failed"]
    assert failed and failed[0].sop_uid == sop_uid_of(bad)
    assert failed[0].sop_class_uid == PRIVATE_CLASS
    assert f"SOP class {PRIVATE_CLASS} is not accepted by the Portal AET" in failed[0].reason
    rejected = [e for e in events if e.kind == "context_rejected"]
    assert rejected and rejected[0].sop_class_uid == PRIVATE_CLASS
    shown = run_cli("study", "show", spec.study_uid, config=cfg)
    assert "suboperation_failed" in shown.stdout and PRIVATE_CLASS in shown.stdout


def test_only_context_rejected_is_not_blamed_on_ae_registration(tmp_path, qrscp, gw_port,
                                                                gw_factory):
    """qrscp answers 0xA801 when the only context it offered was rejected by us."""
    spec = StudySpec(accession="FAIL2")
    bad = _private_instance(spec)
    seed_qrscp(qrscp, write_study([bad], tmp_path / "private"))
    gw = gw_factory(_config(tmp_path, gw_port, qrscp.port))
    with pytest.raises(Fatal) as err:
        gw.retriever.handle(*_task(spec.study_uid))
    msg = str(err.value)
    assert "the Portal AET DICOMGATE rejected what PACS HOSPPACS" in msg
    assert PRIVATE_CLASS in msg
    assert "does not know move destination" not in msg


@pytest.mark.parametrize("peer_kind", ["qrscp", "orthanc"])
def test_storage_ae_rejected_names_allowed_calling_aets(tmp_path, gw_port, gw_factory,
                                                        peer_kind):
    """The PACS is queried as HOSPQR but sends images as HOSPPACS, which the Portal AET
    does not allow: the error names dicom.allowed_calling_aets, not AE registration."""
    spec = StudySpec(accession="AET1")
    data = ct_instances(spec, series=1, per_series=2)
    if peer_kind == "qrscp":
        peer = QrScp(tmp_path / "qr", PACS_AET, {GW_AET: ("127.0.0.1", gw_port)}).start()
        peer.load(write_study(data, tmp_path / "in"))
        port, stop = peer.port, peer.stop
    else:
        from tests.support.orthanc import PeerOrthanc

        peer = PeerOrthanc(tmp_path / "orthanc", PACS_AET,
                       modalities={"gateway": (GW_AET, "127.0.0.1", gw_port)}).start()
        for d in data:
            peer.upload(d)
        port, stop = peer.dicom_port, peer.stop
    try:
        gw = gw_factory(_config(tmp_path, gw_port, port, pacs_aet="HOSPQR"))
        with pytest.raises(Fatal) as err:
            gw.retriever.handle(*_task(spec.study_uid))
        msg = str(err.value)
        assert f"rejected the storage association from {PACS_AET}" in msg, msg
        assert "dicom.allowed_calling_aets" in msg
        assert "add AE DICOMGATE" not in msg
    finally:
        stop()


def _task(study_uid: str):
    from images_helpers import retrieve_task

    return retrieve_task({"study_uid": study_uid})


def test_private_sop_class_accepted_when_configured(tmp_path, gw_port, gw_factory):
    """dicom.extra_sop_classes: a private instance a pynetdicom sender (its own process,
    the private class registered there) sends is stored; without the key the same context is
    rejected and recorded. (DCMTK storescu does not propose unknown SOP classes at all.)"""
    spec = StudySpec(accession="PRIV1")
    files = write_study([_private_instance(spec)], tmp_path / "private")
    plain = gw_factory(_config(tmp_path, gw_port, 104))
    out = _send_private(files[0], gw_port)
    assert out.returncode != 0  # rejected: no presentation context
    plain.scp.stop()
    cfg = _config(tmp_path, gw_port, 104)
    cfg.write_text(cfg.read_text().replace(
        "[dicom]\n", f'[dicom]\nextra_sop_classes = ["{PRIVATE_CLASS}"]\n'))
    gw = gw_factory(cfg)
    out = _send_private(files[0], gw_port)
    assert out.returncode == 0, out.stderr
    (row,) = gw.store.instances.of_study(spec.study_uid)
    assert row.sop_class_uid == PRIVATE_CLASS
    assert Path(row.path).read_bytes()[128:132] == b"DICM"
    assert [e.sop_class_uid for e in gw.store.dicom_events.since(0, ("context_rejected",))] == [
        PRIVATE_CLASS]  # recorded by the first gateway, before the key


SEND_PRIVATE = """
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid
register_uid(sys.argv[3], "SiemensCSANonImageStorage", StorageServiceClass)
ae = AE(ae_title="MODALITY1")
ae.add_requested_context(sys.argv[3], ["1.2.840.10008.1.2.1"])
assoc = ae.associate("127.0.0.1", int(sys.argv[2]), ae_title="DICOMGATE")
ok = assoc.is_established and assoc.accepted_contexts
status = assoc.send_c_store(dcmread(sys.argv[1])) if ok else None
if assoc.is_established:
    assoc.release()
sys.exit(0 if status is not None and status.Status == 0 else 1)
"""


def _send_private(path: Path, port: int):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", SEND_PRIVATE, str(path), str(port),
                           PRIVATE_CLASS], capture_output=True, text=True, timeout=60)


def test_extra_sop_classes_must_be_uids(tmp_path, gw_port):
    cfg = _config(tmp_path, gw_port, 104)
    cfg.write_text(cfg.read_text().replace(
        "[dicom]\n", '[dicom]\nextra_sop_classes = ["1.3.12.2.1107.5.9.1", "Siemens CSA"]\n'))
    out = run_cli("check-config", str(cfg))
    assert out.returncode == 2
    assert "dicom.extra_sop_classes[1]: 'Siemens CSA' is not a UID" in out.stdout + out.stderr
