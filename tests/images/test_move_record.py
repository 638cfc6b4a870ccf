"""The Portal AET's record of each incoming association, and the retrieve reading it: each
C-MOVE is told apart by its move originator Message ID, a refusal counts only for the
C-MOVE (study) it happened in, and "no association at all" is a fact, not a guess."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from images_helpers import (
    GW_AET,
    PACS_AET,
    images_config,
    retrieve_task,
    start_gateway,
    with_long_uid,
)
from pacs_peers import DcmQrScp

from dicomgate.config.load import load
from dicomgate.sandbox.orthanc import free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state import PortalAssociation
from dicomgate.tasks import Fatal, RetryLater
from tests.support import wait_until
from tests.support.orthanc import PeerOrthanc
from tests.support.studies import write_study


@pytest.fixture
def pacs(tmp_path: Path, gw_port: int):
    """Orthanc reading every file from disk (no storage cache): a damaged file shows."""
    o = PeerOrthanc(tmp_path / "pacs", PACS_AET,
                    modalities={"gateway": (GW_AET, "127.0.0.1", gw_port)},
                    extra={"MaximumStorageCacheSize": 0, "ConcurrentJobs": 4}).start()
    yield o
    o.stop()


def _damage(pacs: PeerOrthanc, sop_uid: str) -> None:
    [item] = [i for i in pacs.post("/tools/lookup", sop_uid) if i["Type"] == "Instance"]
    uuid = pacs.session.get(f"{pacs.url}/instances/{item['ID']}/attachments/dicom/info",
                            timeout=10).json()["Uuid"]
    (pacs.workdir / "storage" / uuid[:2] / uuid[2:4] / uuid).write_bytes(b"damaged" * 100)


def test_each_association_is_recorded_with_its_cmove(pacs, gateway, tmp_path):
    spec = StudySpec(accession="ACC-REC")
    data = ct_instances(spec, series=1, per_series=4)
    for blob in data:
        pacs.upload(blob)
    gateway.retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))
    moved = [a for a in _all(gateway) if a.stored]
    assert len(moved) == 1
    [a] = moved
    assert a.calling_aet == PACS_AET and a.move_aet == GW_AET and a.move_msg_id
    assert a.stored == 4 and a.refused == 0 and a.carried(spec.study_uid)
    # how it ended is written after the release, not waited for (ingest.ended): it may land
    # after the PACS's final C-MOVE response
    ended = wait_until(lambda: next(x for x in _all(gateway) if x.id == a.id).ended_at,
                       what="the association's end recorded")
    a = next(x for x in _all(gateway) if x.id == a.id)
    assert a.outcome in ("released", "closed") and ended is not None
    again = gateway.store.portal_associations.of_move(GW_AET, a.move_msg_id,
                                                      spec.study_uid, 0)
    assert [x.id for x in again] == [a.id]

    # a modality's association names no C-MOVE; an AE not allowed is rejected and recorded
    files = write_study(ct_instances(StudySpec(accession="ACC-MOD"), series=1,
                                     per_series=1), tmp_path / "mod")
    port = gateway.config.dicom.port
    ok = subprocess.run(["storescu", "-aet", "MODALITY1", "-aec", GW_AET, "127.0.0.1",
                         str(port), str(files[0])], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    subprocess.run(["storescu", "-aet", "STRANGER", "-aec", GW_AET, "127.0.0.1", str(port),
                    str(files[0])], capture_output=True, timeout=30)
    by_caller = {x.calling_aet: x for x in _all(gateway)}
    assert by_caller["MODALITY1"].move_aet is None and by_caller["MODALITY1"].stored == 1
    stranger = by_caller["STRANGER"]
    assert stranger.outcome == "rejected" and stranger.stored == 0
    [event] = gateway.store.dicom_events.of_associations([stranger.id])
    assert event.kind == "association_rejected" and "STRANGER" in event.reason


def _all(gw) -> list[PortalAssociation]:
    rows = gw.store.db.query("SELECT * FROM portal_associations ORDER BY id")
    return [PortalAssociation(**dict(r)) for r in rows]


def test_a_refusal_counts_only_for_its_own_study(pacs, gateway):
    """Study A holds an instance our Portal AET quarantines; study B, moved at the same
    time, a file the PACS cannot read. B is not told 'our Portal AET could not store',
    A is not told the PACS cannot send: each gets its own cause."""
    a = StudySpec(accession="ACC-A")
    a_good = ct_instances(a, series=1, per_series=20)
    a_bad, a_bad_uid = with_long_uid(ct_instances(a, series=1, per_series=1, seed=3)[0], "2")
    b = StudySpec(accession="ACC-B")
    b_data = ct_instances(b, series=1, per_series=20, seed=11)
    for blob in [a_bad, *a_good, *b_data]:
        pacs.upload(blob)
    b_bad = sop_uid_of(b_data[5])
    _damage(pacs, b_bad)

    errors: dict[str, str] = {}

    def run(spec: StudySpec) -> None:
        try:
            gateway.retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))
        except (Fatal, RetryLater) as exc:
            errors[spec.accession] = str(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert a_bad_uid in errors["ACC-A"] and "quarantine" in errors["ACC-A"], errors
    assert b_bad not in errors["ACC-A"], errors
    assert b_bad in errors["ACC-B"] and "did not send" in errors["ACC-B"], errors
    assert "quarantine" not in errors["ACC-B"] and a_bad_uid not in errors["ACC-B"], errors


def test_a702_and_no_association_names_the_address_the_pacs_must_have(tmp_path, gw_port):
    """DCMTK's dcmqrscp knows our AE at a port nobody listens on: it answers 0xA702; the
    Portal AET saw nothing, so the message says the PACS could not reach us and where."""
    wrong = free_port()
    peer = DcmQrScp(tmp_path / "qr", PACS_AET, {GW_AET: ("127.0.0.1", wrong)}).start()
    gw = start_gateway(load(images_config(tmp_path / "gw.toml", state_dir=tmp_path / "st",
                                          port=gw_port, pacs_port=peer.port)))
    try:
        spec = StudySpec(accession="ACC-A702")
        peer.load(write_study(ct_instances(spec, series=1, per_series=2), tmp_path / "in"))
        with pytest.raises(RetryLater) as err:
            gw.retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))
    finally:
        gw.scp.stop()
        gw.store.close()
        peer.stop()
    msg = str(err.value)
    assert "0xA702" in msg and "the Portal AET saw no association" in msg, msg
    assert "could not reach this gateway" in msg, msg
    assert f"AE {GW_AET} (dicom.ae_title), host 127.0.0.1, port {gw_port}" in msg, msg
    assert "convert" not in msg, msg  # not blamed on image conversion
