"""Reports and events to the cloud REST server of docs/upstream-api.md."""

from __future__ import annotations

import json
import time

import pytest
from upstream_helpers import build_app, drain, upstream_config

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.state.kinds import Deletion, PushReport, Upload, Withdraw
from dicomgate.upstream.rest import idempotency_key

SECRET = "s3cr3t-hmac-key"
RECORD = {"accessionNo": "CT2026001", "patientName": "张三", "idCardNo": "330102198001011234",
          "examConclusion": "未见异常", "examFindings": "双肺纹理清晰", "modality": "CT",
          "reportDoctor": "李四", "auditTime": "2026-11-25 10:00:00"}


@pytest.fixture
def hmac_api():
    server = CloudApi(auth="hmac", key_id="H33010200001", secret=SECRET).start()
    yield server
    server.stop()


def _app(tmp_path, api_url, **kw):
    kw.setdefault("auth", "hmac")
    if kw["auth"] == "hmac":
        kw.setdefault("hmac_secret", SECRET)
    return build_app(upstream_config(tmp_path / "state", "http://127.0.0.1:9/dicom-web",
                                     api_url, **kw))


def add_exam(app, record: dict, versions: int = 1, state: str = "synced") -> int:
    now = time.time()
    with app.store.db.tx() as c:
        exam_id = c.execute(
            "INSERT INTO exams (hospital_id, accession_no, study_uid, state, record, "
            "report_version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            ("H33010200001", record["accessionNo"], "1.2.3.4", state, json.dumps(record),
             versions, now, now)).lastrowid
        for v in range(1, versions + 1):
            rec = dict(record, examConclusion=f"{record['examConclusion']} v{v}")
            c.execute("INSERT INTO exam_versions (exam_id, version, source_type, content_hash, "
                      "record, created_at) VALUES (?,?,?,?,?,?)",
                      (exam_id, v, "3" if v == 1 else "4", f"h{v}",
                       json.dumps(rec, ensure_ascii=False), now))
    return exam_id


def push(app, exam_id: int, version: int) -> None:
    app.store.tasks.enqueue(PushReport(exam_id, version), exam_id=exam_id)


def test_report_signed_with_hmac_and_accepted(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url)
    exam_id = add_exam(app, RECORD)
    push(app, exam_id, 1)
    assert drain(app) == ["done"]
    assert hmac_api.auth_failures == []
    held = hmac_api.reports[("H33010200001", "CT2026001")]
    assert held["reportVersion"] == 1 and held["examConclusion"] == "未见异常 v1"
    assert held["hospitalId"] == "H33010200001" and held["studyInstanceUid"] == "1.2.3.4"
    req = hmac_api.requests[-1]
    assert req["headers"]["Idempotency-Key"] == idempotency_key(
        "H33010200001", "push_report", f"exam:{exam_id}:v1", "1")
    assert app.store.exams.get_by_id(exam_id).state == "reported"


def test_wrong_secret_refused_by_server_and_retried(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url, hmac_secret="not-the-secret")
    push(app, add_exam(app, RECORD), 1)
    assert drain(app) == ["pending"]
    assert hmac_api.auth_failures == ["bad signature"]
    task = app.store.tasks.list(kind="push_report")[0]
    assert "credentials" in task.last_error and task.run_after > time.time() + 60


def test_busy_cloud_retry_after_honoured_same_idempotency_key(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url)
    hmac_api.fail_next = [(503, "2")]
    push(app, add_exam(app, RECORD), 1)
    t0 = time.time()
    assert drain(app) == ["pending"]
    task = app.store.tasks.list(kind="push_report")[0]
    assert 1.0 <= task.run_after - t0 <= 3.5  # Retry-After: 2, not the backoff
    time.sleep(max(0.0, task.run_after - time.time()) + 0.1)
    assert drain(app) == ["done"]
    keys = [r["headers"]["Idempotency-Key"] for r in hmac_api.requests]
    nonces = [r["headers"]["X-DG-Nonce"] for r in hmac_api.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and nonces[0] != nonces[1]
    assert len(hmac_api.applied) == 1


def test_resent_report_is_a_replay_not_a_second_report(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url)
    exam_id = add_exam(app, RECORD)
    push(app, exam_id, 1)
    assert drain(app) == ["done"]
    # As after a crash between the cloud's answer and our bookkeeping: the same work again.
    app.store.tasks.enqueue(PushReport(exam_id, 1), reopen=True)
    assert drain(app) == ["done"]
    assert len(hmac_api.requests) == 2 and len(hmac_api.applied) == 1
    sends = app.store.delivery.sends("push_report")
    assert [s["outcome"] for s in sends] == ["ok", "ok"]


def test_modified_report_sent_with_new_version(tmp_path, api):
    app = _app(tmp_path, api.url, auth="none")
    exam_id = add_exam(app, RECORD, versions=2)
    push(app, exam_id, 1)  # superseded before it ran
    push(app, exam_id, 2)
    assert drain(app) == ["done", "done"]
    assert [a["body"]["reportVersion"] for a in api.applied] == [2]
    assert api.reports[("H33010200001", "CT2026001")]["examConclusion"] == "未见异常 v2"


def test_refused_report_is_dead_with_the_clouds_reason(tmp_path, api):
    app = _app(tmp_path, api.url, auth="none")
    api.refuse["/reports"] = (400, "examRsltCode: expected 1, 2 or 3")
    push(app, add_exam(app, RECORD), 1)
    assert drain(app) == ["dead"]
    task = app.store.tasks.list(kind="push_report")[0]
    assert "examRsltCode: expected 1, 2 or 3" in task.last_error


def test_bearer_token(tmp_path):
    server = CloudApi(auth="bearer", token="tok-123").start()
    try:
        app = _app(tmp_path, server.url, auth="bearer", token="tok-123")
        push(app, add_exam(app, RECORD), 1)
        assert drain(app) == ["done"]
        assert server.requests[-1]["headers"]["Authorization"] == "Bearer tok-123"
    finally:
        server.stop()


def test_withdrawal_stops_uploads_of_the_exam(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url)
    exam_id = add_exam(app, RECORD)
    app.store.instances.ensure_study("1.2.3.4", accession_no="CT2026001", exam_id=exam_id)
    push(app, exam_id, 1)
    app.store.tasks.enqueue(Withdraw("H33010200001", "CT2026001", exam_id,
                                     "2026-11-25 11:00:00"))
    assert drain(app) == ["done", "done"]
    body = hmac_api.applied[-1]["body"]
    assert hmac_api.applied[-1]["route"] == "/withdrawals"
    assert body["studyInstanceUids"] == ["1.2.3.4"] and body["refundTime"] == "2026-11-25 11:00:00"
    assert ("H33010200001", "CT2026001") not in hmac_api.reports
    assert app.store.instances.study("1.2.3.4")["state"] == "withdrawn"
    app.store.tasks.enqueue(Upload("1.2.3.4"))
    assert drain(app) == ["done"]
    assert app.store.tasks.find("upload", "study:1.2.3.4").result == "skipped: study is withdrawn"


def test_deletion_event(tmp_path, hmac_api):
    app = _app(tmp_path, hmac_api.url)
    app.store.tasks.enqueue(Deletion("H33010200001", "CT2026001", (), ("1.2.3.4.5",),
                                     "2026-11-25 12:00:00", 41))
    assert drain(app) == ["done"]
    body = hmac_api.applied[-1]["body"]
    assert body == {"deletionId": 41, "hospitalId": "H33010200001",
                    "accessionNo": "CT2026001", "studyInstanceUids": [],
                    "sopInstanceUids": ["1.2.3.4.5"], "operateTime": "2026-11-25 12:00:00"}


def test_stow_is_signed_too(tmp_path, hmac_api, fresh_cloud):
    """The HMAC headers cover a streamed multipart body: hash checked by the test server."""
    from upstream_helpers import spool

    from dicomgate.sandbox.studies import StudySpec, ct_instances

    app = build_app(upstream_config(tmp_path / "state", hmac_api.url.replace("/api", "/dw"),
                                    hmac_api.url, auth="hmac", hmac_secret=SECRET))
    spec = StudySpec("ACC-SIGN")
    spool(app, ct_instances(spec, series=1, per_series=3))
    app.store.tasks.enqueue(Upload(spec.study_uid))
    drain(app)
    stow = [r for r in hmac_api.requests if r["path"] == "/dw/studies"]
    assert stow and hmac_api.auth_failures == []  # signature and body hash verified
    assert "Transfer-Encoding" not in stow[0]["headers"]  # a plain Content-Length
    assert stow[0]["body"].startswith(b"--") and len(stow[0]["body"]) > 3 * 8192
