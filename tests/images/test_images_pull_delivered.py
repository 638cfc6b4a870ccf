"""`dicomgate pull` with [upstream] on (issue 13 points 5 and 8): an upload is queued when
the study is complete, and a study the cloud already holds counts as done (exit 0); with
[upstream] switched on later, what was received meanwhile is queued for upload."""

from __future__ import annotations

import pytest
from images_helpers import images_config

from dicomgate.cli import main
from dicomgate.config.load import load
from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.upstream.feature import queue_waiting_uploads
from tests.support.engines import open_store
from tests.support.orthanc import PeerOrthanc as Orthanc


@pytest.fixture
def cloud(tmp_path):
    o = Orthanc(tmp_path / "cloud", "CLOUD", dicomweb=True).start()
    yield o
    o.stop()


def _upstream(cloud: Orthanc) -> str:
    return (f'[upstream]\ndicomweb_url = "{cloud.url}/dicom-web"\n'
            f'api_url = "http://127.0.0.1:1/api"\nconfirm_delay = "0s"\ntimeout = "20s"\n')


def test_pull_exits_0_for_a_delivered_study(tmp_path, pacs, gw_port, cloud, capsys):
    spec = StudySpec(accession="DLV1")
    for d in ct_instances(spec, series=1, per_series=3):
        pacs.upload(d)
    cfg = images_config(tmp_path / "up.toml", state_dir=tmp_path / "state", port=gw_port,
                       pacs_port=pacs.dicom_port, extra=_upstream(cloud))
    assert main(["--config", str(cfg), "pull", "--study-uid", spec.study_uid]) == 0
    store = open_store(load(cfg))
    try:
        assert store.tasks.find("upload", f"study:{spec.study_uid}") is not None
        assert main(["--config", str(cfg), "push", "--once", "--study", spec.study_uid,
                     "--timeout", "60"]) == 0
        assert store.instances.study(spec.study_uid)["state"] == "delivered"
        capsys.readouterr()
        assert main(["--config", str(cfg), "pull", "--study-uid", spec.study_uid]) == 0
        out = capsys.readouterr().out
        assert f"study {spec.study_uid}: delivered, 3/3 instances" in out
        assert store.instances.study(spec.study_uid)["state"] == "delivered"
    finally:
        store.close()


def test_uploads_queued_when_upstream_is_switched_on(tmp_path, pacs, gw_port):
    spec = StudySpec(accession="DLV2")
    for d in ct_instances(spec, series=1, per_series=2):
        pacs.upload(d)
    cfg = images_config(tmp_path / "off.toml", state_dir=tmp_path / "state", port=gw_port,
                       pacs_port=pacs.dicom_port)
    assert main(["--config", str(cfg), "pull", "--study-uid", spec.study_uid]) == 0
    store = open_store(load(cfg))
    try:
        assert store.tasks.list(kind="upload") == []  # no [upstream]: nothing queued
        assert queue_waiting_uploads(store) == 1  # what upstream runs when it starts
        assert store.tasks.find("upload", f"study:{spec.study_uid}").state == "pending"
        assert queue_waiting_uploads(store) == 0  # once
    finally:
        store.close()
