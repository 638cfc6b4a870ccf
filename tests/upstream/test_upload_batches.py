"""Several studies' uploads together, against a real Orthanc cloud that logs every request
it gets: one STOW-RS request for the small studies due together, one QIDO-RS request to
confirm them, each task ended on its own; a study whose instance the cloud refuses fails
alone; a study being retrieved is sent and confirmed once."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import pydicom
import pytest
from cloud_peers import CountingCloud
from upstream_helpers import build_app, complete, drain, enqueue_upload, spool, upstream_config

from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state.names import StudyState


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    o = CountingCloud(tmp_path_factory.mktemp("counting-cloud")).start()
    yield o
    o.stop()


@pytest.fixture
def cloud(counting):
    if not counting.running():
        counting.start()
    counting.clear()
    counting.forget_requests()
    return counting


def _app(tmp_path, cloud, **kw):
    return build_app(upstream_config(tmp_path / "state", cloud.dicomweb_url,
                                     "http://127.0.0.1:9/api", **kw))


def _studies(app, n: int, per: int = 3) -> dict[str, list[str]]:
    """`n` complete small studies in the spool, each with its upload queued."""
    out = {}
    for i in range(n):
        spec = StudySpec(f"BAT{i:03d}")
        data = ct_instances(spec, series=1, per_series=per, rows=32, cols=32, seed=i)
        out[spec.study_uid] = spool(app, data)
        complete(app, spec.study_uid, len(data))
        enqueue_upload(app, spec.study_uid)
    return out


def _task(app, uid):
    return app.store.tasks.find("upload", f"study:{uid}")


def test_small_studies_due_together_go_in_one_post_and_one_qido(tmp_path, cloud):
    app = _app(tmp_path, cloud)
    studies = _studies(app, 5)
    cloud.forget_requests()
    assert drain(app) == ["done"]  # one claim: the other four went along
    assert cloud.stow_posts() == 1
    assert cloud.qido_gets() == 1
    for uid, sops in studies.items():
        assert cloud.sop_uids(uid) == set(sops)
        assert app.store.instances.study(uid)["state"] == "delivered"
        task = _task(app, uid)
        assert task.state == "done" and "study delivered" in task.result
        assert task.lease_owner is None


def test_batches_are_bounded_by_studies_and_by_bytes(tmp_path, cloud):
    app = _app(tmp_path, cloud, batch_max_studies=2, batch_max_instances=4)
    studies = _studies(app, 5, per=3)
    cloud.forget_requests()
    states = drain(app)
    assert states == ["done"] * 3  # 2 + 2 + 1 studies per worker's batch
    # 6 instances per batch of two studies, at most 4 per request: 2 requests per batch,
    # 1 for the last study alone; one QIDO-RS per batch of two, one for the last.
    assert cloud.stow_posts() == 5
    assert cloud.qido_gets() == 3
    assert all(_task(app, uid).state == "done" for uid in studies)
    assert all(len(cloud.sop_uids(uid)) == 3 for uid in studies)


def test_one_study_alone_when_batches_are_off(tmp_path, cloud):
    app = _app(tmp_path, cloud, batch_max_studies=1)
    _studies(app, 3)
    cloud.forget_requests()
    assert drain(app) == ["done"] * 3
    assert cloud.stow_posts() == 3 and cloud.qido_gets() == 3


def _without_series_uid(spec: StudySpec) -> tuple[str, bytes]:
    """An instance an archive cannot file: no Series Instance UID."""
    ds = pydicom.dcmread(io.BytesIO(ct_instances(spec, series=1, per_series=1,
                                                 rows=32, cols=32, seed=99)[0]))
    sop = "1.2.826.0.1.3680043.8.498.999" + str(int(time.time() * 1e6))[-12:]
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    del ds.SeriesInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf)
    return sop, buf.getvalue()


def test_an_instance_the_cloud_refuses_fails_only_its_study(tmp_path, cloud):
    app = _app(tmp_path, cloud)
    studies = _studies(app, 3)
    bad_study = next(iter(studies))
    sop, data = _without_series_uid(StudySpec("BAT000"))
    path = app.config.gateway.spool_dir / bad_study / "1.2.3" / f"{sop}.dcm"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    app.store.instances.record(sop_uid=sop, study_uid=bad_study, series_uid="1.2.3",
                               sop_class_uid=None, transfer_syntax=None, path=str(path),
                               size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                               source="test")
    complete(app, bad_study, 4)
    cloud.forget_requests()
    assert drain(app) == ["done"]
    # Orthanc answers 400 naming the instance in FailedSOPSequence (0xC000) and stores
    # the rest of the request: nothing is sent twice to find the culprit.
    assert cloud.stow_posts() == 1
    row = app.store.instances.get(sop)
    assert row.state == "rejected" and "0xC000" in row.error
    assert app.store.instances.study_counts(bad_study) == {"delivered": 3, "rejected": 1}
    assert app.store.instances.study(bad_study)["state"] == "complete"
    assert "1 rejected" in _task(app, bad_study).result
    for uid in list(studies)[1:]:
        assert app.store.instances.study(uid)["state"] == "delivered"
        assert "study delivered" in _task(app, uid).result


def test_cloud_down_each_task_of_the_batch_retries_on_its_own(tmp_path, cloud):
    app = _app(tmp_path, cloud)
    studies = _studies(app, 3)
    cloud.stop()
    try:
        assert drain(app) == ["pending"]
        for uid in studies:
            task = _task(app, uid)
            assert task.state == "pending" and "cannot connect" in task.last_error
            assert task.lease_owner is None and task.attempts == 1
    finally:
        cloud.start()
    app.store.tasks.make_due(("upload",))
    assert drain(app) == ["done"]
    assert all(app.store.instances.study(uid)["state"] == "delivered" for uid in studies)


def test_a_study_being_retrieved_is_sent_and_confirmed_once(tmp_path, cloud):
    """The upload starts with the first instances; the retrieve completes while it runs
    (and queues it again, as images does): one request, one check, one run."""
    app = _app(tmp_path, cloud, batch_wait="30s")
    spec = StudySpec("BATRETR")
    data = ct_instances(spec, series=1, per_series=6, rows=32, cols=32)
    app.store.instances.ensure_study(spec.study_uid)
    app.store.instances.set_study(spec.study_uid, state=StudyState.RETRIEVING)
    spool(app, data[:2])
    enqueue_upload(app, spec.study_uid)
    cloud.forget_requests()
    states: list[str] = []
    worker = threading.Thread(target=lambda: states.extend(drain(app)))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while _task(app, spec.study_uid).state != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        for d in data[2:]:  # instances land, each announced as images announces them
            spool(app, [d])
            enqueue_upload(app, spec.study_uid)
        with app.store.transaction():  # the retrieve ends: complete, upload queued again
            complete(app, spec.study_uid, len(data))
            enqueue_upload(app, spec.study_uid)
    finally:
        worker.join(60)
    assert states == ["done"]
    assert cloud.stow_posts() == 1 and cloud.qido_gets() == 1
    assert app.store.instances.study(spec.study_uid)["state"] == "delivered"
    task = _task(app, spec.study_uid)
    assert task.state == "done" and task.attempts == 1


def test_a_study_still_being_retrieved_does_not_hold_the_batch_back(tmp_path, cloud):
    app = _app(tmp_path, cloud, batch_wait="30s")
    (done_uid,) = _studies(app, 1)
    spec = StudySpec("BATSLOW")
    data = ct_instances(spec, series=1, per_series=6, rows=32, cols=32)
    app.store.instances.ensure_study(spec.study_uid)
    app.store.instances.set_study(spec.study_uid, state=StudyState.RETRIEVING)
    spool(app, data[:2])
    enqueue_upload(app, spec.study_uid)
    started = time.monotonic()
    task = app.store.tasks.claim(["upload"], app.pool.owner, 60)
    assert task.key == f"study:{done_uid}"
    assert app.pool.run(task) == "done"
    assert time.monotonic() - started < 15  # not the 30 s the other study may wait
    assert app.store.instances.study(done_uid)["state"] == "delivered"
    slow = _task(app, spec.study_uid)
    assert slow.state == "pending" and slow.attempts == 0 and slow.lease_owner is None
    assert cloud.sop_uids(spec.study_uid) == set()
