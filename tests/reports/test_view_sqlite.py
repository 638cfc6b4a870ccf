"""Mode 1 over real unixODBC + the SQLite3 driver: a SQL VIEW over PACS-like tables."""

from __future__ import annotations

import json
import os
import time

from reports_pacs import Exam, ago, insert_exam_sql, insert_report_sql, report_values, ts
from reports_support import Pacs, open_store, reports_config, view_reports

from dicomgate.config import load
from tests.support import engines
from tests.support.engines import built_app


def add(pacs: Pacs, exam: Exam) -> None:
    pacs.run(insert_exam_sql(), exam.values())


def sync(cli, config, *extra) -> list[dict]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def by_type(results: list[dict]) -> dict[int, dict]:
    return {r["type"]: r for r in results}


def test_four_event_types_make_their_tasks(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("A1", study_uid="1.2.840.1.1"))
    add(sqlite_pacs, Exam("A2"))
    sqlite_pacs.run(insert_report_sql(), report_values("A1", "未见异常。", 20))
    add(sqlite_pacs, Exam("A3", minutes_ago=50))
    sqlite_pacs.run("INSERT INTO RIS_FEE VALUES (?, ?)", ("A3", ts(ago(10))))

    res = by_type(sync(cli, sqlite_config))
    assert [res[t]["read"] for t in (1, 2, 3, 4)] == [3, 1, 1, 0]
    assert res[1]["new"] == 3 and res[3]["unchanged"] == 1

    store = open_store(sqlite_config)
    a1 = store.exams.get("H33010200001", "A1")
    assert a1.state == "reported" and a1.report_version == 1
    assert a1.record["sex"] == "1" and a1.record["chargeType"] == "02"
    assert a1.record["imgExamType"] == "2"  # derived from CT
    assert a1.record["examTime"].endswith("+08:00")

    retrieve = store.tasks.find("retrieve", "study:1.2.840.1.1")
    assert retrieve.payload == {"study_uid": "1.2.840.1.1", "accession_no": "A1",
                                "hospital_id": "H33010200001", "exam_id": a1.id,
                                "reason": "report audited: completeness re-check"}
    assert retrieve.exam_id == a1.id and retrieve.study_uid == "1.2.840.1.1"
    assert retrieve.run_after > time.time() + 200  # the settle delay (5m) still applies
    push = store.tasks.find("push_report", f"exam:{a1.id}:v1")
    assert push.payload == {"exam_id": a1.id, "version": 1} and push.state == "pending"
    assert store.exams.version(a1.id, 1)["record"]["examConclusion"] == "未见异常。"

    a2 = store.exams.get("H33010200001", "A2")
    r2 = store.tasks.find("retrieve", "acc:H33010200001:A2")  # no study UID: by accession
    assert r2.payload["reason"] == "exam performed" and "study_uid" not in r2.payload
    assert a2.state == "synced"

    a3 = store.exams.get("H33010200001", "A3")
    assert a3.state == "withdrawn"
    assert store.tasks.find("retrieve", "acc:H33010200001:A3").state == "cancelled"
    withdraw = store.tasks.find("withdraw", "exam:H33010200001:A3")
    assert withdraw.payload == {"hospital_id": "H33010200001", "accession_no": "A3",
                                "exam_id": a3.id, "refund_time": a3.record["refundTime"]}
    # the same pass read all four watermarks
    assert set(store.watermarks.all()) == {f"reports.type{t}" for t in (1, 2, 3, 4)}


def test_overlap_reread_changes_nothing(cli, sqlite_pacs, sqlite_config):
    for i in range(20):
        add(sqlite_pacs, Exam(f"B{i}", minutes_ago=5 + i))
    sqlite_pacs.run(insert_report_sql(), report_values("B3", "结论", 3))
    sync(cli, sqlite_config)
    store = open_store(sqlite_config)
    tasks_before = [t.public() for t in store.tasks.list()]
    res = by_type(sync(cli, sqlite_config))
    assert res[1]["read"] == 20 and res[1]["unchanged"] == 20 and res[1]["tasks"] == 0
    assert res[3]["read"] == 1 and res[3]["tasks"] == 0
    assert [t.public() for t in store.tasks.list()] == tasks_before
    assert len(store.exams.versions(store.exams.get("H33010200001", "B3").id)) == 1


def test_modified_report_is_a_new_version(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("C1"))
    sqlite_pacs.run(insert_report_sql(), report_values("C1", "初步结论", 20))
    sync(cli, sqlite_config)
    sqlite_pacs.run("UPDATE RIS_REPORT SET IMPRESSION=?, MODIFY_DATE=? WHERE EXAM_NO=?",
                    ("修改后的结论", ts(ago(2)), "C1"))
    res = by_type(sync(cli, sqlite_config))
    # the exam-time query sees the changed row first, the audit-time query makes the
    # version, the modify-time query adds nothing more
    assert res[1]["changed"] == 1 and res[3]["tasks"] == 1
    assert res[4]["read"] == 1 and res[4]["unchanged"] == 1 and res[4]["tasks"] == 0
    store = open_store(sqlite_config)
    exam = store.exams.get("H33010200001", "C1")
    versions = store.exams.versions(exam.id)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["record"]["examConclusion"] == "修改后的结论"
    assert [v["source_type"] for v in versions] == ["3", "4"]
    assert exam.report_version == 2 and exam.record["examConclusion"] == "修改后的结论"
    assert store.tasks.find("push_report", f"exam:{exam.id}:v2").payload == \
        {"exam_id": exam.id, "version": 2}
    res = by_type(sync(cli, sqlite_config))
    assert res[3]["tasks"] == res[4]["tasks"] == 0
    assert len(store.exams.versions(exam.id)) == 2


def test_refund_cancels_pending_work(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("D1", study_uid="1.2.3.4"))
    sqlite_pacs.run(insert_report_sql(), report_values("D1", "结论", 20))
    sync(cli, sqlite_config)
    store = open_store(sqlite_config)
    exam = store.exams.get("H33010200001", "D1")
    # an upload the images package queued for the study (linked only by study UID)
    from dicomgate.state.kinds import Upload

    upload = store.tasks.enqueue(Upload("1.2.3.4"), study_uid="1.2.3.4")
    sqlite_pacs.run("INSERT INTO RIS_FEE VALUES (?, ?)", ("D1", ts(ago(1))))
    res = by_type(sync(cli, sqlite_config))
    assert res[2]["read"] == 1 and res[2]["cancelled"] == 3 and res[2]["tasks"] == 1
    states = {t.kind: t.state for t in store.tasks.list(exam_id=exam.id)}
    assert states == {"retrieve": "cancelled", "push_report": "cancelled",
                      "withdraw": "pending"}
    assert store.tasks.get(upload.id).state == "cancelled"
    assert "refunded" in store.tasks.get(upload.id).last_error
    assert store.exams.get("H33010200001", "D1").state == "withdrawn"
    res = by_type(sync(cli, sqlite_config))  # re-read: nothing new
    assert sum(r["tasks"] + r["cancelled"] for r in res.values()) == 0


def test_bad_rows_are_quarantined_and_recover(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("E1", sex="7"))
    add(sqlite_pacs, Exam("E2"))
    add(sqlite_pacs, Exam(None))  # no accession number at all
    res = by_type(sync(cli, sqlite_config))
    assert res[1]["read"] == 3 and res[1]["new"] == 1 and res[1]["quarantined"] == 2
    store = open_store(sqlite_config)
    e1 = store.exams.get("H33010200001", "E1")
    assert e1.state == "quarantined"
    assert e1.quarantine_reason.startswith("sex: '7' (expected one of 0 未知, 1 男, 2 女")
    assert store.tasks.list(exam_id=e1.id) == []
    assert store.tasks.find("retrieve", "acc:H33010200001:E2") is not None

    code, out, _ = cli(sqlite_config, "exams", "list", "--state", "quarantined")
    assert code == 0 and "E1" in out and "sex: '7'" in out
    assert "accessionNo: missing" in out  # the unkeyed row is listed too
    code, out, _ = cli(sqlite_config, "exams", "show", "E1")
    assert code == 0 and "quarantine      sex: '7'" in out

    res = by_type(sync(cli, sqlite_config))  # the same bad rows: still quarantined, quiet
    assert res[1]["quarantined"] == 2 and res[1]["tasks"] == 0

    sqlite_pacs.run("UPDATE RIS_EXAM SET PAT_SEX='2' WHERE EXAM_NO='E1'")
    res = by_type(sync(cli, sqlite_config))
    assert res[1]["changed"] == 1 and res[1]["quarantined"] == 1
    e1 = store.exams.get("H33010200001", "E1")
    assert e1.state == "synced" and e1.quarantine_reason is None
    assert store.tasks.find("retrieve", "acc:H33010200001:E1").exam_id == e1.id


def test_nulls_and_derived_fields(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("F1", sex=None, id_no=None, fee=None, modality="MR"))
    add(sqlite_pacs, Exam("F2", modality="ES", exam_class=None))
    add(sqlite_pacs, Exam("F3", id_no="110105194912310021"))  # wrong check digit
    # without patient or modality the cloud cannot file the exam: quarantined, named
    add(sqlite_pacs, Exam("F4", name=None))
    add(sqlite_pacs, Exam("F5", modality=None, exam_class=None))
    res = by_type(sync(cli, sqlite_config))
    assert res[1]["new"] == 3 and res[1]["quarantined"] == 2
    store = open_store(sqlite_config)
    f1 = store.exams.get("H33010200001", "F1")
    assert f1.record["sex"] is None and f1.record["idCardNo"] is None
    assert f1.record["imgExamType"] == "3"
    assert store.exams.get("H33010200001", "F2").record["imgExamType"] is None
    f3 = store.exams.get("H33010200001", "F3")
    assert f3.state == "synced"
    assert f3.warnings == ["idCardNo: check digit wrong (GB 11643): mistyped number?"]
    for acc, field in (("F4", "patientName"), ("F5", "modality")):
        exam = store.exams.get("H33010200001", acc)
        assert exam.state == "quarantined" and exam.quarantine_reason == (
            f"{field}: missing (expected a value; required for type 1 (performed))")
        assert store.tasks.find("retrieve", f"acc:H33010200001:{acc}") is None


def test_gbk_database(tmp_path, cli):
    pacs = Pacs(tmp_path / "gbk.db", encoding="gbk")
    add(pacs, Exam("G1", name="欧阳娜娜"))
    pacs.run(insert_report_sql(), report_values("G1", "右肺上叶见结节影，建议复查。", 10))
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}",
                                                 'encoding = "gbk"'))
    sync(cli, config)
    code, out, _ = cli(config, "exams", "show", "G1", "--json", "--reveal")
    record = json.loads(out)["record"]
    assert record["patientName"] == "欧阳娜娜"
    assert record["examConclusion"] == "右肺上叶见结节影，建议复查。"
    assert record["examItemName"] == "胸部CT平扫"
    assert json.loads(out)["warnings"] == []
    # the same database read without the setting: the text does not arrive as the
    # database holds it, so nothing is applied and the setting is named
    plain = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    engines.discard_store(tmp_path / "state")
    code, out, _ = cli(plain, "sync", "--once", "--json")
    error = json.loads(out)[0]["error"]
    assert code == 1 and "text column FINDINGS (examFindings) does not arrive" in error
    assert "reports.view.encoding for a GBK database (now unset)" in error
    assert open_store(plain).exams.get("H33010200001", "G1") is None


def test_show_masks_personal_data_unless_revealed(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("H1", name="张三丰"))
    sync(cli, sqlite_config)
    code, out, _ = cli(sqlite_config, "exams", "show", "H1")
    assert code == 0 and "张三丰" not in out and "11010519491231002X" not in out
    assert "张***" in out or "张**" in out
    assert "retrieve" in out and "acc:H33010200001:H1" in out
    code, out, _ = cli(sqlite_config, "exams", "show", "H1", "--json", "--reveal")
    assert json.loads(out)["record"]["idCardNo"] == "11010519491231002X"
    code, out, err = cli(sqlite_config, "exams", "show", "NOPE")
    assert code == 1 and "no exam with accession number 'NOPE'" in err


def test_manual_window_and_accession(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("J1", minutes_ago=60 * 30))  # before the first-run lookback (1d)
    res = by_type(sync(cli, sqlite_config, "--type", "1"))
    assert res[1]["read"] == 0 and list(res) == [1]
    store = open_store(sqlite_config)
    mark = store.watermarks.get("reports.type1")
    since, until = ts(ago(60 * 31)), ts(ago(60 * 29))
    res = by_type(sync(cli, sqlite_config, "--since", since, "--until", until))
    assert res[1]["new"] == 1
    assert store.watermarks.get("reports.type1") == mark  # a manual window moves no mark
    sqlite_pacs.run("UPDATE RIS_EXAM SET PAT_TYPE='2' WHERE EXAM_NO='J1'")
    results = sync(cli, sqlite_config, "--accession", "J1")
    assert results[0]["read"] == 1 and results[0]["changed"] == 1
    assert store.exams.get("H33010200001", "J1").record["patientType"] == "2"


def test_text_output_and_clear_errors(tmp_path, cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("K1"))
    code, out, _ = cli(sqlite_config, "sync", "--once")
    assert code == 0 and "1 performed" in out and "QUARANTINED" in out
    bad = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={sqlite_pacs.path}")
                       .replace('"View_Pacs_Text_Info"', '"No_Such_View"'))
    code, out, err = cli(bad, "sync", "--once", "--type", "1")
    assert code == 1 and "no such table: No_Such_View" in out and "Traceback" not in out + err
    assert open_store(bad).watermarks.get("reports.type1") is not None  # the earlier good run
    nodrv = reports_config(tmp_path, view_reports("Driver=NoSuchDriver;Database=x"))
    code, out, _ = cli(nodrv, "sync", "--once", "--type", "1")
    assert code == 1 and "cannot connect to the PACS database over ODBC" in out


def test_a_view_file_replaced_by_rename_is_read_again(tmp_path, cli):
    """File-based sources (SQLite, Access) are often rewritten as a new file renamed over
    the old one: the daemon's open connection would keep reading the deleted file."""
    pacs = Pacs(tmp_path / "pacs.db")
    add(pacs, Exam("B1", minutes_ago=30))
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    app = built_app(load(config))
    app.scheduler.run_now("reports.poll")
    assert app.store.exams.get("H33010200001", "B1").state == "synced"

    fresh = Pacs(tmp_path / "pacs.db.new")
    add(fresh, Exam("B1", minutes_ago=30))
    add(fresh, Exam("B2", minutes_ago=5))
    os.replace(fresh.path, pacs.path)
    app.scheduler.run_now("reports.poll")
    assert app.health()["reports"] is None
    assert app.store.exams.get("H33010200001", "B2").state == "synced"

    pacs.path.unlink()  # gone: said, not read as empty
    app.scheduler.run_now("reports.poll")
    assert "the view's database file " + str(pacs.path) + " is gone" in \
        app.health()["reports"]
