"""Issue 14, point 7: an instance received again with the same SOP Instance UID and new
content after delivery. The cloud is a real Orthanc that keeps the first version (its
default); the gateway must make it hold the new one, or flag the instance: never report
delivered for content the cloud does not hold."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom

from dicomgate.app import App
from dicomgate.config import load
from dicomgate.images.ingest import Ingest
from dicomgate.images.spool import Spool
from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state.names import StudyState
from tests.support.engines import built_app, state_toml


def _app(tmp_path: Path, cloud: Orthanc, api: CloudApi) -> App:
    state = tmp_path / "state"
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{state}"
[dicom]
ae_title = "DICOMGATE"
port = {free_port()}
[upstream]
dicomweb_url = "{cloud.dicomweb_url}"
api_url = "{api.url}"
confirm_delay = "1s"
[tasks]
backoff_base = "1s"
{state_toml(state)}""")
    config = load(cfg)
    return built_app(config)


def _ingest(app: App, blobs: list[bytes]) -> list[str]:
    spool = Spool(app.config.gateway.state_dir)
    ingest = Ingest(app.store, spool, 0)
    outcomes = []
    try:
        for blob in blobs:
            temp = spool.temp_path()
            temp.write_bytes(blob)
            stored = ingest.from_file(temp, len(blob), hashlib.sha256(blob).hexdigest(),
                                      source="test")
            outcomes.append(stored.outcome)
    finally:
        ingest.close()
    return outcomes


def _drain(app: App) -> list[str]:
    states = []
    for _ in range(30):
        task = app.store.tasks.claim(["upload"], app.pool.owner, 60)
        if task is None:
            return states
        states.append(app.pool.run(task))
    return states


def _changed(blob: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.PixelData = bytes(255 - b for b in ds.PixelData)  # same UIDs, other pixels
    ds.ImageComments = "corrected"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _deliver_v1(app: App, spec: StudySpec) -> list[bytes]:
    v1 = ct_instances(spec, series=1, per_series=3)
    assert _ingest(app, v1) == ["new"] * 3
    app.store.instances.set_study(spec.study_uid, state=StudyState.COMPLETE, expected_count=3)
    assert _drain(app) == ["done"]
    assert app.store.instances.study(spec.study_uid)["state"] == "delivered"
    return v1


def test_replaced_content_reaches_a_cloud_that_does_not_overwrite(tmp_path, cloud, api):
    app = _app(tmp_path, cloud, api)
    spec = StudySpec("ACC-REPL")
    v1 = _deliver_v1(app, spec)
    sop = sop_uid_of(v1[0])
    v2 = _changed(v1[0])

    assert _ingest(app, [v2]) == ["replaced"]
    assert _drain(app) == ["done"]
    held = pydicom.dcmread(io.BytesIO(cloud.instance_file(sop)))
    assert held.PixelData == pydicom.dcmread(io.BytesIO(v2)).PixelData
    assert held.ImageComments == "corrected"
    assert app.store.instances.get(sop).state == "delivered"
    assert app.store.instances.study(spec.study_uid)["state"] == "delivered"
    deletions = [a["body"] for a in api.applied if a["route"] == "/deletions"]
    assert deletions and deletions[0]["sopInstanceUids"] == [sop]
    assert deletions[0]["reason"] == "replaced"
    assert cloud.sop_uids(spec.study_uid) == {sop_uid_of(b) for b in v1}
    app.store.close()


def test_replaced_content_the_cloud_will_not_take_is_flagged(tmp_path, cloud):
    server = CloudApi().start()  # answers deletions but removes nothing
    try:
        app = _app(tmp_path, cloud, server)
        spec = StudySpec("ACC-REPL2")
        v1 = _deliver_v1(app, spec)
        sop = sop_uid_of(v1[0])
        assert _ingest(app, [_changed(v1[0])]) == ["replaced"]
        _drain(app)
        row = app.store.instances.get(sop)
        assert row.state == "rejected", row
        assert "still holds an older version" in row.error
        assert f"remove SOP Instance {sop}" in row.error
        assert app.store.instances.study(spec.study_uid)["state"] != "delivered"
        held = pydicom.dcmread(io.BytesIO(cloud.instance_file(sop)))
        assert held.PixelData == pydicom.dcmread(io.BytesIO(v1[0])).PixelData  # unchanged
        app.store.close()
    finally:
        server.stop()
