"""Images to a real Orthanc cloud by STOW-RS, confirmed by QIDO-RS."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pydicom
from upstream_helpers import build_app, complete, drain, enqueue_upload, spool, upstream_config

from dicomgate.sandbox.studies import StudySpec, bundled_instances, ct_instances
from dicomgate.state.kinds import Deletion, Upload
from dicomgate.state.names import StudyState
from dicomgate.upstream.dicomweb import DicomWebClient


def _app(tmp_path, cloud, api_url="http://127.0.0.1:9/api", **kw):
    return build_app(upstream_config(tmp_path / "state", cloud.dicomweb_url, api_url, **kw))


def test_study_delivered_with_identical_pixels(tmp_path, fresh_cloud):
    app = _app(tmp_path, fresh_cloud)
    spec = StudySpec("ACC001")
    data = bundled_instances(spec) + ct_instances(spec, series=1, per_series=4)
    uids = spool(app, data)
    complete(app, spec.study_uid, len(data))
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    assert app.store.instances.study(spec.study_uid)["state"] == "delivered"
    assert app.store.instances.study_counts(spec.study_uid) == {"delivered": len(data)}
    assert fresh_cloud.sop_uids(spec.study_uid) == set(uids)
    for original in data:
        sent = pydicom.dcmread(io.BytesIO(original))
        got = pydicom.dcmread(io.BytesIO(fresh_cloud.instance_file(sent.SOPInstanceUID)))
        assert got.PixelData == sent.PixelData
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID


class _Spy:
    """Watches the real client's requests: how many at once, how big.

    The first requests are held until `overlap` of them are open together (at most
    HOLD seconds): if the uploader cannot send that many at once, the peak stays lower."""

    HOLD = 10.0

    def __init__(self, client: DicomWebClient, overlap: int):
        self.real = client.stow
        self.overlap = overlap
        self.cond = threading.Condition()
        self.now = self.peak = 0
        self.batches: list[list[tuple[str, Path]]] = []
        client.stow = self.stow

    def stow(self, items, attempts):
        with self.cond:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.batches.append(items)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.peak >= self.overlap, timeout=self.HOLD)
        try:
            return self.real(items, attempts)
        finally:
            with self.cond:
                self.now -= 1


def test_batching_and_parallel_requests(tmp_path, fresh_cloud):
    max_bytes = 20 * 1024
    app = _app(tmp_path, fresh_cloud, concurrency=3, batch_max_instances=3,
               batch_max_bytes=f"{max_bytes}B")
    spec = StudySpec("ACC002")
    data = ct_instances(spec, series=2, per_series=12, rows=64, cols=64)  # ~8.5 KB each
    spool(app, data)
    complete(app, spec.study_uid, len(data))
    spy = _Spy(app.features["upstream"].upload.client, overlap=3)
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    sizes = [sum(p.stat().st_size for _, p in b) for b in spy.batches]
    assert all(len(b) <= 3 for b in spy.batches)
    assert all(s <= max_bytes for s in sizes)
    assert sum(len(b) for b in spy.batches) == len(data)
    assert len(spy.batches) >= len(data) // 2  # 8.5 KB instances: two per 20 KB request
    assert spy.peak == 3
    assert len(fresh_cloud.sop_uids(spec.study_uid)) == len(data)


def test_pipelined_upload_while_study_arrives(tmp_path, fresh_cloud):
    app = _app(tmp_path, fresh_cloud)
    spec = StudySpec("ACC003")
    data = ct_instances(spec, series=1, per_series=10)
    app.store.instances.ensure_study(spec.study_uid)
    app.store.instances.set_study(spec.study_uid, state=StudyState.RETRIEVING)
    spool(app, data[:4])
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    # Sent while the study arrives (after a short wait for the rest of it); confirmed once,
    # by the run its retrieve's end queues, not by every pass.
    assert app.store.instances.study_counts(spec.study_uid) == {"uploaded": 4}
    assert len(fresh_cloud.sop_uids(spec.study_uid)) == 4
    assert app.store.instances.study(spec.study_uid)["state"] == "retrieving"
    spool(app, data[4:])
    complete(app, spec.study_uid, len(data))
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    assert app.store.instances.study(spec.study_uid)["state"] == "delivered"
    assert len(fresh_cloud.sop_uids(spec.study_uid)) == 10


def test_bad_instance_rejected_with_reason_rest_delivered(tmp_path, fresh_cloud, capsys):
    app = _app(tmp_path, fresh_cloud, batch_max_instances=10)
    spec = StudySpec("ACC004")
    data = ct_instances(spec, series=1, per_series=5)
    spool(app, data)
    bad = app.config.gateway.spool_dir / spec.study_uid / "1.2.3" / "9.9.9.9.dcm"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"this is not a data set" * 20)
    app.store.instances.record(sop_uid="9.9.9.9", study_uid=spec.study_uid, series_uid="1.2.3",
                               sop_class_uid=None, transfer_syntax=None, path=str(bad),
                               size=bad.stat().st_size, sha256="x" * 64, source="test")
    complete(app, spec.study_uid, 6)
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    counts = app.store.instances.study_counts(spec.study_uid)
    assert counts == {"delivered": 5, "rejected": 1}
    row = app.store.instances.get("9.9.9.9")
    assert row.state == "rejected" and "HTTP 400" in row.error
    assert app.store.instances.study(spec.study_uid)["state"] == "complete"  # not delivered
    task = app.store.tasks.find("upload", f"study:{spec.study_uid}")
    assert "1 rejected" in task.result
    # Not retried forever: another run sends nothing new and keeps the rejection.
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    assert app.store.instances.get("9.9.9.9").state == "rejected"
    from dicomgate.cli import main

    assert main(["--config", str(app.config.path), "upload-state", spec.study_uid]) == 0
    out = capsys.readouterr().out
    assert "9.9.9.9" in out and "rejected" in out and "HTTP 400" in out


def test_cloud_down_backlog_then_drains(tmp_path, fresh_cloud):
    app = _app(tmp_path, fresh_cloud)
    up = app.features["upstream"]
    spec = StudySpec("ACC005")
    data = ct_instances(spec, series=1, per_series=6)
    spool(app, data)
    complete(app, spec.study_uid, len(data))
    fresh_cloud.stop()
    try:
        enqueue_upload(app, spec.study_uid)
        assert drain(app) == ["pending"]
        task = app.store.tasks.find("upload", f"study:{spec.study_uid}")
        assert "cannot connect" in task.last_error
        assert up.status.probe().startswith("dicomweb failed")
        section = up.status.section()
        assert section["backlog_instances"] == 6
        assert section["backlog_bytes"] == sum(len(d) for d in data)
        assert section["cloud_dicomweb"].startswith("UNREACHABLE")
        assert up.status.health().startswith("cloud unreachable")
    finally:
        fresh_cloud.start()
    assert app.store.tasks.find("upload", f"study:{spec.study_uid}").run_after > time.time()
    up.status.probe()  # the cloud is back: backed-off work is due now
    assert drain(app) == ["done"]
    assert up.status.section()["backlog_instances"] == 0
    assert up.status.section()["cloud_dicomweb"].startswith("reachable")
    assert fresh_cloud.sop_uids(spec.study_uid) == {pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID
                                                    for d in data}


def test_instance_lost_by_cloud_is_sent_again(tmp_path, fresh_cloud):
    app = _app(tmp_path, fresh_cloud)
    spec = StudySpec("ACC006")
    data = ct_instances(spec, series=1, per_series=4)
    uids = spool(app, data)
    complete(app, spec.study_uid, len(data))
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    fresh_cloud.delete_instance(uids[0])
    assert len(fresh_cloud.sop_uids(spec.study_uid)) == 3
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    assert fresh_cloud.sop_uids(spec.study_uid) == set(uids)
    assert app.store.instances.study_counts(spec.study_uid) == {"delivered": 4}


def test_upload_waits_for_a_pending_deletion_of_its_study(tmp_path, fresh_cloud):
    app = _app(tmp_path, fresh_cloud)
    spec = StudySpec("ACCDEL")
    data = ct_instances(spec, series=1, per_series=2)
    spool(app, data)
    complete(app, spec.study_uid, len(data))
    deletion = app.store.tasks.enqueue(Deletion("H", "ACCDEL", (spec.study_uid,), (), "t", 1),
                                       delay=3600)
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["pending"]  # retried later, nothing sent
    assert fresh_cloud.sop_uids(spec.study_uid) == set()
    upload = app.store.tasks.find("upload", f"study:{spec.study_uid}")
    assert "deletion" in upload.last_error
    app.store.tasks.cancel(deletion.id, "test: deletion delivered")
    app.store.tasks.make_due((Upload.kind,))
    assert drain(app) == ["done"]
    assert len(fresh_cloud.sop_uids(spec.study_uid)) == 2
