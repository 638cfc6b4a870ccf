"""Retrieve against a real Orthanc PACS: study-level C-MOVE, completeness, repair, growth."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from images_helpers import GW_AET, PACS_AET, images_config, retrieve_task, same_dataset

from dicomgate.images.retrieve import Retriever, present_sop_uids
from dicomgate.images.scu import PacsClient
from dicomgate.sandbox.orthanc import free_port
from dicomgate.sandbox.studies import (
    Patient,
    StudySpec,
    bundled_instances,
    ct_instances,
    sop_uid_of,
)
from dicomgate.tasks import Fatal
from tests.support.engines import open_store
from tests.support.studies import write_study


def test_retrieve_every_transfer_syntax_byte_identical(pacs, gateway):
    spec = StudySpec(accession="ACC100", patient=Patient(name="Li^Si=李四", charset="GB18030"))
    data = bundled_instances(spec) + ct_instances(spec, series=2, per_series=3)
    for d in data:
        pacs.upload(d)
    result = gateway.retriever.run(study_uid=spec.study_uid)
    assert "complete" in result
    study = gateway.store.instances.study(spec.study_uid)
    assert study["state"] == "complete"
    assert study["expected_count"] == len(data)
    rows = gateway.store.instances.of_study(spec.study_uid)
    assert {r.sop_uid for r in rows} == pacs.sop_uids(spec.study_uid)
    assert len({r.transfer_syntax for r in rows}) >= 9  # sent as stored, not transcoded
    for row in rows:
        ours = Path(row.path).read_bytes()
        assert ours[128:132] == b"DICM"
        assert same_dataset(ours, pacs.instance_file(row.sop_uid)) == [], row.transfer_syntax
        assert Path(row.path).stat().st_mode & 0o777 == 0o600
        assert row.size == len(ours)
    gb = pydicom.dcmread(rows[0].path)
    assert "李四" in str(gb.PatientName)
    # no [upstream] in this configuration: no upload task (it would wait forever)
    assert gateway.store.tasks.find("upload", f"study:{spec.study_uid}") is None
    assert not list(gateway.spool.incoming.glob("*"))  # no temp file left behind


def test_move_progress_comes_from_the_pacs_pending_responses(pacs, gateway):
    """`dicomgate pull` draws from this: the C-MOVE's completed sub-operations, not polling."""
    spec = StudySpec(accession="ACC-PROG")
    data = ct_instances(spec, series=2, per_series=4)
    for d in data:
        pacs.upload(d)
    told: list[tuple[str, int, int]] = []
    retriever = Retriever(gateway.store, gateway.pacs,
                          progress=lambda *a: told.append(a))
    assert "complete" in retriever.run(study_uid=spec.study_uid)
    assert told, "Orthanc sent no pending C-MOVE response"
    assert {uid for uid, _, _ in told} == {spec.study_uid}
    assert {expected for _, _, expected in told} == {len(data)}
    held = [h for _, h, _ in told]
    assert held == sorted(held) and 0 <= held[0] and held[-1] <= len(data)


def test_repair_after_spool_files_deleted_and_growth(pacs, gateway):
    spec = StudySpec(accession="ACC200")
    for d in ct_instances(spec, series=2, per_series=5):
        pacs.upload(d)
    gateway.retriever.run(accession_no="ACC200")
    rows = gateway.store.instances.of_study(spec.study_uid)
    assert len(rows) == 10
    first_received = {r.sop_uid: r.received_at for r in rows}
    for row in rows[:3]:
        Path(row.path).unlink()
    assert len(present_sop_uids(gateway.store, spec.study_uid)) == 7
    before = gateway.scp.received
    result = gateway.retriever.run(study_uid=spec.study_uid)
    assert "3 moved" in result
    assert gateway.scp.received - before == 3  # only the missing ones were asked for
    assert all(Path(r.path).exists() for r in gateway.store.instances.of_study(spec.study_uid))

    # the study grows after the exam: a second pull fetches only the new instances
    extra = ct_instances(spec, series=1, per_series=2, seed=99)
    for d in extra:
        pacs.upload(d)
    before = gateway.scp.received
    result = gateway.retriever.run(accession_no="ACC200")
    assert "12 instances, 2 moved" in result
    assert gateway.scp.received - before == 2
    rows = gateway.store.instances.of_study(spec.study_uid)
    assert {r.sop_uid for r in rows} == pacs.sop_uids(spec.study_uid)
    for r in rows:
        if r.sop_uid in first_received and r.sop_uid not in {x.sop_uid for x in rows[:0]}:
            assert r.received_at == pytest.approx(first_received[r.sop_uid])
    assert {sop_uid_of(d) for d in extra} <= {r.sop_uid for r in rows}


def test_accession_unknown_retries_later(pacs, gateway):
    from dicomgate.tasks import RetryLater

    with pytest.raises(RetryLater, match="no study with AccessionNumber NOPE"):
        gateway.retriever.handle(*retrieve_task({"accession_no": "NOPE",
                                                  "hospital_id": "H1"}))


def test_pacs_down_is_retried(gateway, pacs):
    from dicomgate.tasks import RetryLater

    pacs.stop()
    with pytest.raises(RetryLater, match=f"PACS {PACS_AET} at 127.0.0.1"):
        gateway.retriever.handle(*retrieve_task({"study_uid": "1.2.3.4"}))


@pytest.fixture
def dcmqrscp(tmp_path):
    """DCMTK's Q/R SCP as a PACS that does not know our AE as a move destination."""
    if shutil.which("dcmqrscp") is None:
        pytest.fail("dcmqrscp (DCMTK) is required: apt-get install dcmtk")
    port = free_port()
    db = tmp_path / "qrdb"
    db.mkdir()
    cfg = tmp_path / "dcmqrscp.cfg"
    cfg.write_text(f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
                   "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
                   f"AETable BEGIN\n{PACS_AET} {db} RW (200, 1024mb) ANY\nAETable END\n")
    proc = subprocess.Popen(["dcmqrscp", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    yield port
    proc.terminate()
    proc.wait(10)


def test_unknown_move_destination_message(tmp_path, dcmqrscp, gw_port):
    from dicomgate.config.load import load

    spec = StudySpec(accession="ACC300")
    files = write_study(ct_instances(spec, series=1, per_series=2), tmp_path / "in")
    deadline = time.monotonic() + 10
    while True:  # dcmqrscp takes a moment to listen
        out = subprocess.run(["storescu", "-aec", PACS_AET, "127.0.0.1", str(dcmqrscp),
                              *map(str, files)], capture_output=True, timeout=30)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.returncode == 0, out.stderr
    cfg = load(images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state", port=gw_port,
                            pacs_port=dcmqrscp))
    store = open_store(cfg)
    retriever = Retriever(store, PacsClient(cfg.dicom, cfg.pacs))
    with pytest.raises(Fatal) as err:
        retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))
    msg = str(err.value)
    assert f"PACS {PACS_AET} at 127.0.0.1:{dcmqrscp} answered 0xA801" in msg
    assert "the Portal AET saw no association from it" in msg
    assert f"add AE {GW_AET} (dicom.ae_title), host " in msg
    assert f"port {gw_port} (dicom.port) as a move destination" in msg
    store.close()


def _study_only_pacs(tmp_path, gw_port: int, give_count: bool, count_extra: int = 0,
                     **options):
    from images_helpers import start_gateway
    from study_only_pacs import StudyOnlyPacs

    from dicomgate.config.load import load

    pacs_port = free_port()
    peer = StudyOnlyPacs(PACS_AET, pacs_port, {GW_AET: ("127.0.0.1", gw_port)},
                         give_count=give_count, count_extra=count_extra, **options)
    gw = start_gateway(load(images_config(tmp_path / "so.toml", state_dir=tmp_path / "so",
                                         port=gw_port, pacs_port=pacs_port)))
    return peer, gw


@contextmanager
def _serving(peer, gw, data: list[bytes]):
    """The study-only PACS holding `data`, answering while the test runs; both stopped
    after it."""
    for d in data:
        peer.add(d)
    peer.start()
    try:
        yield
    finally:
        peer.stop()
        gw.scp.stop()
        gw.store.close()


def test_pacs_refusing_image_queries_falls_back_to_the_study_count(tmp_path, gw_port):
    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=True)
    spec = StudySpec(accession="ACC-SO")
    data = ct_instances(spec, series=2, per_series=3)
    with _serving(peer, gw, data):
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 6 instances" in result
        # First retrieve: the STUDY-level count and move account for every instance, so no
        # finer query was needed.
        assert peer.refused_levels == []
        # A re-check of a study already held lists its instances: refused, the count decides.
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 6 instances, 0 moved" in result
        assert peer.refused_levels  # it really refused the finer queries
        study = gw.store.instances.study(spec.study_uid)
        assert study["state"] == "complete" and study["expected_count"] == 6
        assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}


def test_pacs_refusing_image_queries_without_a_count_is_a_clear_error(tmp_path, gw_port):
    from dicomgate.images.scu import PacsRefused

    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=False)
    spec = StudySpec(accession="ACC-SO2")
    with _serving(peer, gw, ct_instances(spec, series=1, per_series=1)):
        with pytest.raises(PacsRefused, match="NumberOfStudyRelatedInstances"):
            gw.retriever.run(study_uid=spec.study_uid)


def test_first_retrieve_is_one_association_without_listing(tmp_path, gw_port):
    """A study held nowhere yet: the STUDY-level count and C-MOVE share one association,
    and when the move accounts for every instance no SERIES/IMAGE query is made."""
    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=True)
    spec = StudySpec(accession="ACC-ONE")
    data = ct_instances(spec, series=2, per_series=2)
    with _serving(peer, gw, data):
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 4 instances" in result
        assert peer.associations == 1
        assert peer.refused_levels == []
        assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}


def test_a_count_the_move_does_not_match_is_not_complete(tmp_path, gw_port):
    """The PACS's NumberOfStudyRelatedInstances says 4 but its C-MOVE sends 3: the study is
    not taken as complete on the count; the listing is asked for, and without it the
    study stays incomplete and the task retries."""
    from dicomgate.tasks import RetryLater

    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=True, count_extra=1)
    spec = StudySpec(accession="ACC-STALE")
    with _serving(peer, gw, ct_instances(spec, series=1, per_series=3)):
        with pytest.raises(RetryLater, match="1 of 4 instances did not arrive"):
            gw.retriever.run(study_uid=spec.study_uid)
        assert peer.refused_levels  # the listing was asked for
        study = gw.store.instances.study(spec.study_uid)
        assert study["state"] == "incomplete" and study["expected_count"] == 4


def test_a_short_count_is_raised_to_what_arrived(tmp_path, gw_port):
    """The PACS's NumberOfStudyRelatedInstances says 2 and it refuses image-level queries,
    but its C-MOVE sends 3: the study has 3, not the PACS's 2."""
    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=True, count_extra=-1)
    spec = StudySpec(accession="ACC-SHORT")
    with _serving(peer, gw, ct_instances(spec, series=1, per_series=3)):
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 3 instances" in result
        assert f"PACS {PACS_AET} at 127.0.0.1:{peer.port} counted 2" in result
        study = gw.store.instances.study(spec.study_uid)
        assert study["state"] == "complete" and study["expected_count"] == 3


def test_a_short_listing_is_raised_to_what_arrived(tmp_path, gw_port):
    """The PACS's index lags its last upload: its count and its image-level listing both
    leave one instance out, its C-MOVE sends it. All four are expected, and a re-check
    that moves nothing still expects four."""
    peer, gw = _study_only_pacs(tmp_path, gw_port, give_count=True, count_extra=-1,
                                find_levels=("STUDY", "SERIES", "IMAGE"), unlisted=1)
    spec = StudySpec(accession="ACC-LAG")
    data = ct_instances(spec, series=2, per_series=2)
    with _serving(peer, gw, data):
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 4 instances" in result
        assert "counted 3" in result
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 4 instances, 0 moved" in result
        study = gw.store.instances.study(spec.study_uid)
        assert study["state"] == "complete" and study["expected_count"] == 4
        assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}


class _DrowsyCheckpoint(threading.Event):
    """pynetdicom's reactor checkpoint, as it behaves when the association's own thread is
    descheduled right after waking (a busy two-core host): its wait returns, then the
    thread runs 10 ms later, still flagged as paused."""

    def __init__(self, reactor_thread: threading.Thread):
        super().__init__()
        self.reactor_thread = reactor_thread

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if threading.current_thread() is self.reactor_thread:
            time.sleep(0.01)
        return woke


def _busy_host(assoc) -> None:
    """Both of an association's threads scheduled as on a loaded host: its reactor wakes
    late, and the thread sending a request reads each response 40 ms after it came."""
    drowsy = _DrowsyCheckpoint(assoc)
    drowsy.set()
    assoc._reactor_checkpoint = drowsy
    read = assoc.dimse.get_msg

    def late_read(block: bool = False):
        if block and threading.current_thread() is not assoc:
            time.sleep(0.04)
        return read(block)
    assoc.dimse.get_msg = late_read


def test_successive_queries_on_one_association_lose_no_response(pacs, gateway):
    """The queries of one retrieve share an association; pynetdicom's association thread,
    waking late between two of them, took a response meant for the next query and dropped
    it: a listing one instance short, a study counted short and called complete."""
    spec = StudySpec(accession="ACC-REACTOR")
    data = ct_instances(spec, series=2, per_series=3)
    for d in data:
        pacs.upload(d)
    expected = {sop_uid_of(d) for d in data}
    with gateway.pacs.session() as session:
        _busy_host(session._session)
        for _ in range(3):
            listing = session.study_instances(spec.study_uid)
            assert {u for s in listing.by_series.values() for u in s} == expected
            assert session.study_instance_count(spec.study_uid) == len(data)
