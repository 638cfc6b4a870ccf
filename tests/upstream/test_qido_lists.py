"""QIDO-RS for several studies at once (UID list matching), against Orthanc's DICOMweb
plugin, and the fall-back to one request per study for servers that do not match lists."""

from __future__ import annotations

import pytest
from cloud_peers import CountingCloud, NoListMatching
from upstream_helpers import build_app, complete, drain, enqueue_upload, spool, upstream_config

from dicomgate.config import load
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.upstream.dicomweb import DicomWebClient
from dicomgate.upstream.transport import Transport


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    o = CountingCloud(tmp_path_factory.mktemp("qido-cloud")).start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def held(cloud):
    """Three studies in the cloud (2, 3 and 1 instances) and one it does not hold."""
    cloud.clear()
    out = {}
    for i, n in enumerate((2, 3, 1)):
        spec = StudySpec(f"QL{i}")
        sops = set()
        for data in ct_instances(spec, series=1, per_series=n, rows=16, cols=16, seed=i):
            cloud.upload(data)
            sops.add(sop_uid_of(data))
        out[spec.study_uid] = sops
    out[StudySpec("QLNONE").study_uid] = set()
    return out


def _client(tmp_path, url: str) -> DicomWebClient:
    cfg = load(upstream_config(tmp_path / "state", url, "http://127.0.0.1:9/api"))
    return DicomWebClient(Transport(cfg.upstream, cfg.gateway.hospital_id), url)


def test_orthanc_answers_a_study_list_in_one_request(tmp_path, cloud, held):
    client = _client(tmp_path, cloud.dicomweb_url)
    cloud.forget_requests()
    assert client.studies_sop_uids(list(held)) == held
    assert cloud.requests_seen() == [("GET", "/dicom-web/instances")]
    assert client.list_matching is True
    cloud.forget_requests()
    assert client.studies_sop_uids(list(held)) == held  # a study without any: no re-check
    assert len(cloud.requests_seen()) == 1


@pytest.mark.parametrize("reply", ["400", "literal"])
def test_a_server_without_list_matching_is_asked_study_by_study(tmp_path, cloud, held, reply):
    proxy = NoListMatching(cloud.url, reply).start()
    try:
        client = _client(tmp_path, proxy.url)
        assert client.studies_sop_uids(list(held)) == held
        assert client.list_matching is False
        assert proxy.lists == 1
        cloud.forget_requests()
        assert client.studies_sop_uids(list(held)) == held
        assert proxy.lists == 1  # not asked for a list again
        assert len(cloud.requests_seen()) == len(held)
    finally:
        proxy.stop()


def test_uploads_through_a_server_without_list_matching_are_delivered(tmp_path, cloud):
    cloud.clear()
    proxy = NoListMatching(cloud.url, "literal").start()
    try:
        app = build_app(upstream_config(tmp_path / "state", proxy.url, "http://127.0.0.1:9/api"))
        uids = []
        for i in range(3):
            spec = StudySpec(f"QLUP{i}")
            data = ct_instances(spec, series=1, per_series=2, rows=16, cols=16, seed=i)
            spool(app, data)
            complete(app, spec.study_uid, len(data))
            enqueue_upload(app, spec.study_uid)
            uids.append(spec.study_uid)
        assert drain(app) == ["done"]
        assert all(app.store.instances.study(u)["state"] == "delivered" for u in uids)
        assert proxy.lists == 1
    finally:
        proxy.stop()
