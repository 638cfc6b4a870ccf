"""Mode 2: the PACS report HTTP API, against a small server that implements the contract."""

from __future__ import annotations

import json

import pytest
from reports_http_pacs import PacsApi
from reports_pacs import VALID_ID, ago, ts
from reports_support import open_store, reports_config


def http_config(tmp_path, url: str, extra: str = "", images: str = "dicom"):
    return reports_config(tmp_path, f"""
[reports]
source = "http"
overlap = "1h"
settle_delay = "0s"
initial_lookback = "1d"

[reports.http]
url = "{url}"
timeout = "1s"
token = "s3cret"
{extra}

[images]
source = "{images}"
""")


def record(acc: str, minutes: float = 30, **extra) -> dict:
    return {"accessionNo": acc, "patientName": "赵六", "idCardNo": VALID_ID, "sex": 2,
            "patientType": "1", "chargeType": "02", "modality": "DX",
            "examTime": ts(ago(minutes)), "examItemName": "胸部正位片", **extra}


@pytest.fixture
def api():
    with PacsApi() as server:
        server.token = "s3cret"
        yield server


def run(cli, config, *extra) -> tuple[int, dict, str]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert out, err
    return code, {r["type"]: r for r in json.loads(out)}, err


def test_http_four_types_and_image_paths(tmp_path, cli, api):
    urls = "http://pacs.local/img/1.dcm; http://pacs.local/img/2.dcm"
    api.records = [
        record("W1", imagePath=urls),
        record("W2", auditTime=ts(ago(5)), examConclusion="心肺膈未见异常。",
               examRsltCode=1, modifyTime=None),
        record("W3", refundTime=ts(ago(3))),
    ]
    config = http_config(tmp_path, api.url, images="http")
    code, res, err = run(cli, config)
    assert code == 0, err
    assert [res[t]["read"] for t in (1, 2, 3, 4)] == [3, 1, 1, 0]
    assert api.requests[0]["type"] == "1" and set(api.requests[0]) == \
        {"startTime", "endTime", "type"}
    store = open_store(config)
    w1 = store.exams.get("H33010200001", "W1")
    assert w1.record["imgExamType"] == "1" and w1.record["sex"] == "2"
    task = store.tasks.find("retrieve", "acc:H33010200001:W1")
    assert task.payload["image_paths"] == ["http://pacs.local/img/1.dcm",
                                           "http://pacs.local/img/2.dcm"]
    w2 = store.exams.get("H33010200001", "W2")
    assert store.tasks.find("push_report", f"exam:{w2.id}:v1") is not None
    assert store.exams.get("H33010200001", "W3").state == "withdrawn"

    api.records[1] = {**api.records[1], "examConclusion": "心肺膈未见异常，请结合临床。",
                      "modifyTime": ts(ago(1))}
    code, res, err = run(cli, config, "--type", "4")
    assert code == 0 and res[4]["read"] == 1 and res[4]["tasks"] == 1
    assert store.tasks.find("push_report", f"exam:{w2.id}:v2") is not None
    code, res, err = run(cli, config)  # the overlap again: nothing new
    assert sum(r["tasks"] for r in res.values()) == 0


def test_window_too_large_is_split(tmp_path, cli, api):
    from datetime import timedelta

    api.max_window = timedelta(hours=5)
    api.records = [record(f"S{i}", minutes=60 * i + 7) for i in range(20)]
    config = http_config(tmp_path, api.url)
    code, res, err = run(cli, config, "--type", "1")
    assert code == 0, err
    assert res[1]["new"] == 20  # every row of the day, read through halves of the window
    assert len(api.requests) > 4


def test_bad_answers_are_clear_errors(tmp_path, cli, api):
    api.records = [record("X1")]
    config = http_config(tmp_path, api.url)
    api.fault = "code500"
    code, res, err = run(cli, config, "--type", "1")
    assert code == 1 and "answered code 500: 数据库连接失败 (expected code 200)" in \
        res[1]["error"]
    api.fault = "notjson"
    code, res, _ = run(cli, config, "--type", "1")
    assert "not JSON: <html>Service Unavailable</html>" in res[1]["error"]
    api.fault = "slow"
    code, res, _ = run(cli, config, "--type", "1")
    assert "did not answer within 1s" in res[1]["error"]
    assert open_store(config).watermarks.get("reports.type1") is None
    api.fault = None
    api.token = "rotated"
    code, res, _ = run(cli, config, "--type", "1")
    assert "HTTP 401" in res[1]["error"]
    api.token = "s3cret"
    code, res, _ = run(cli, config, "--type", "1")
    assert code == 0 and res[1]["new"] == 1


def test_gbk_body_and_accession_lookup(tmp_path, cli, api):
    api.records = [record("Y1", patientName="诸葛亮", minutes=60 * 48)]  # outside the window
    api.fault = "gbk"
    config = http_config(tmp_path, api.url)
    code, res, err = run(cli, config, "--accession", "Y1")
    assert code == 0, err
    assert res[None]["new"] == 1 and api.requests[-1] == {"accessionNo": "Y1"}
    code, out, _ = cli(config, "exams", "show", "Y1", "--json", "--reveal")
    assert json.loads(out)["record"]["patientName"] == "诸葛亮"
    assert open_store(config).tasks.find("retrieve", "acc:H33010200001:Y1") is not None


def test_http_quarantine_names_field_and_expected(tmp_path, cli, api):
    api.records = [record("Z1", patientType="8"), record("Z2", examTime="昨天下午"),
                   record("Z3")]
    config = http_config(tmp_path, api.url)
    code, res, _ = run(cli, config, "--type", "1")
    assert code == 0 and res[1]["quarantined"] == 1 and res[1]["new"] == 1
    # Z2's examTime cannot be parsed, so the exam-time window never matches it at the PACS:
    # it is read by accession number and quarantined there
    code, res, _ = run(cli, config, "--accession", "Z2")
    store = open_store(config)
    z1, z2 = store.exams.get("H33010200001", "Z1"), store.exams.get("H33010200001", "Z2")
    assert z1.quarantine_reason.startswith("patientType: '8' (expected one of 1 门诊")
    assert z2.state == "quarantined" and z2.quarantine_reason.startswith("examTime: '昨天下午'")


def test_http_duplicate_records_are_one_exam_over_polls(tmp_path, cli, api):
    """The PACS API returns an exam twice (two report drafts): one version, every poll,
    whichever order the API lists them in."""
    draft = record("W9", auditTime=ts(ago(20)), examConclusion="草稿。")
    final = record("W9", auditTime=ts(ago(10)), examConclusion="终稿。")
    config = http_config(tmp_path, api.url)
    store = open_store(config)
    for order in ([draft, final], [final, draft], [draft, final]):
        api.records = order
        code, res, err = run(cli, config)
        assert code == 0, err
        assert res[3]["read"] == 1 and res[3]["duplicates"] == 1
        exam = store.exams.get("H33010200001", "W9")
        assert exam.report_version == 1 and exam.record["examConclusion"] == "终稿。"
    assert len(store.tasks.list(kind="push_report")) == 1
