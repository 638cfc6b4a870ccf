"""HTTP image mode (spec 4.2 mode 2): image URLs streamed into the spool, non-DICOM
quarantined. Orthanc's REST API serves the files over real HTTP on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from images_helpers import images_config, retrieve_task

from dicomgate.config.load import load
from dicomgate.sandbox.studies import StudySpec, bundled_instances
from dicomgate.tasks import Fatal
from tests.support.engines import built_app


def _task(payload: dict) -> tuple:
    return retrieve_task({"hospital_id": "H", "accession_no": "A", **payload})


@pytest.fixture
def http_app(tmp_path, gw_port, pacs):
    cfg = load(images_config(tmp_path / "http.toml", state_dir=tmp_path / "state",
                            port=gw_port, pacs_port=pacs.dicom_port,
                            extra='[images]\nsource = "http"\nhttp_timeout = "10s"\n'))
    app = built_app(cfg)
    yield app
    app.store.close()


def _urls(pacs, data: list[bytes]) -> list[str]:
    return [f"{pacs.url}/instances/{pacs.upload(d)['ID']}/file" for d in data]


def test_http_images_stored_byte_for_byte(http_app, pacs):
    spec = StudySpec(accession="ACC600")
    data = bundled_instances(spec)[:5]
    urls = _urls(pacs, data)
    handler = http_app.registry.get("retrieve").handler
    result = handler(*_task({"accession_no": "ACC600", "image_paths": urls}))
    assert "5 files from 5 URLs (5 new)" in result
    rows = http_app.store.instances.of_study(spec.study_uid)
    assert len(rows) == 5
    served = {pacs.instance_file(r.sop_uid) for r in rows}
    assert {Path(r.path).read_bytes() for r in rows} == served  # kept exactly as served
    assert http_app.store.instances.study(spec.study_uid)["state"] == "complete"
    # no [upstream] here: nothing would ever run an upload task, so none is queued
    assert http_app.store.tasks.find("upload", f"study:{spec.study_uid}") is None
    again = handler(*_task({"accession_no": "ACC600", "image_paths": urls}))
    assert "(0 new)" in again


def test_http_non_dicom_quarantined_rest_stored(http_app, pacs):
    spec = StudySpec(accession="ACC700")
    urls = _urls(pacs, bundled_instances(spec)[:2])
    bad = f"{pacs.url}/system"  # JSON, not DICOM
    handler = http_app.registry.get("retrieve").handler
    with pytest.raises(Fatal, match="1 of 3 image URLs gave no DICOM Part 10 file"):
        handler(*_task({"accession_no": "ACC700", "image_paths": [urls[0], bad, urls[1]]}))
    assert len(http_app.store.instances.of_study(spec.study_uid)) == 2
    notes = list((http_app.config.gateway.state_dir / "quarantine").glob("*.json"))
    assert len(notes) == 1
    note = json.loads(notes[0].read_text())
    assert note["url"] == bad and "DICM" in note["reason"]
    assert http_app.store.instances.study(spec.study_uid)["state"] == "incomplete"


def test_http_server_down_retries(http_app, pacs):
    from dicomgate.tasks import RetryLater

    url = f"{pacs.url}/instances/nope/file"
    handler = http_app.registry.get("retrieve").handler
    with pytest.raises(RetryLater, match="HTTP 404"):
        handler(*_task({"image_paths": [url]}))
    pacs.stop()
    with pytest.raises(RetryLater, match="failed"):
        handler(*_task({"image_paths": [url]}))
