"""Nothing the view holds is skipped or changed without a trace: duplicate rows, bytes,
control characters, identifiers, and the reconciliation pass (real SQLite ODBC)."""

from __future__ import annotations

import json
import sqlite3

from reports_pacs import Exam, ago, insert_exam_sql, insert_report_sql, report_values, ts
from reports_support import Pacs, open_store, reports_config, view_reports

from dicomgate.config import load
from tests.support.engines import built_app


def sync(cli, config, *extra) -> dict[int, dict]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert code == 0, err
    return {r["type"]: r for r in json.loads(out)}


def add(pacs: Pacs, exam: Exam) -> None:
    pacs.run(insert_exam_sql(), exam.values())


def test_duplicate_rows_are_one_exam_and_versions_stay_stable(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("D1"))
    # two report rows for one exam: the view shows the exam twice, different text
    draft = report_values("D1", "草稿：未见异常。", 25)
    final = report_values("D1", "终稿：左肺结节。", 15)
    sqlite_pacs.run(insert_report_sql(), draft)
    sqlite_pacs.run(insert_report_sql(), final)
    store = open_store(sqlite_config)
    for _ in range(3):  # three polls, all inside the overlap
        res = sync(cli, sqlite_config)
        assert res[1]["read"] == 1 and res[1]["duplicates"] == 1
        exam = store.exams.get("H33010200001", "D1")
        assert exam.report_version == 1
        assert exam.record["examConclusion"] == "终稿：左肺结节。"  # the later audit wins
    assert len(store.tasks.list(kind="push_report")) == 1
    assert any("2 rows in the PACS view" in w and "latest modify/audit" in w
               for w in exam.warnings)
    # the same rows in the other physical order: the same choice
    sqlite_pacs.run("DELETE FROM RIS_REPORT")
    sqlite_pacs.run(insert_report_sql(), final)
    sqlite_pacs.run(insert_report_sql(), draft)
    res = sync(cli, sqlite_config)
    assert res[3]["tasks"] == 0 and res[3]["unchanged"] == 1
    assert len(store.exams.versions(exam.id)) == 1
    # a manual window of the past sees only the draft: older than the report held, so
    # it is not applied (no version that flips back)
    res = sync(cli, sqlite_config, "--type", "3", "--since", ts(ago(30)), "--until",
               ts(ago(22)))
    assert res[3]["read"] == 1 and res[3]["stale"] == 1 and res[3]["tasks"] == 0
    exam = store.exams.get("H33010200001", "D1")
    assert exam.record["examConclusion"] == "终稿：左肺结节。" and exam.report_version == 1


def test_duplicates_with_equal_times_choose_by_content_not_order(cli, sqlite_pacs,
                                                                  sqlite_config):
    add(sqlite_pacs, Exam("D2"))
    rows = [report_values("D2", "甲", 15), report_values("D2", "乙", 15)]
    for row in rows:
        sqlite_pacs.run(insert_report_sql(), row)
    sync(cli, sqlite_config)
    store = open_store(sqlite_config)
    chosen = store.exams.get("H33010200001", "D2").record["examConclusion"]
    for _ in range(2):  # reversed row order, twice: never a flip
        sqlite_pacs.run("DELETE FROM RIS_REPORT")
        rows.reverse()
        for row in rows:
            sqlite_pacs.run(insert_report_sql(), row)
        res = sync(cli, sqlite_config)
        assert res[3]["tasks"] == 0
        assert store.exams.get("H33010200001", "D2").record["examConclusion"] == chosen
    assert len(store.tasks.list(kind="push_report")) == 1


def blob(pacs: Pacs, acc: str, column: str, value: bytes) -> None:
    c = sqlite3.connect(pacs.path, isolation_level=None)
    c.execute(f"UPDATE RIS_EXAM SET {column} = ? WHERE EXAM_NO = ?", (value, acc))
    c.close()


def test_gbk_blob_is_decoded_with_the_view_encoding(tmp_path, cli):
    pacs = Pacs(tmp_path / "gbk.db", encoding="gbk")  # a GBK database
    add(pacs, Exam("G1"))
    blob(pacs, "G1", "PAT_NAME", "张三".encode("gbk"))  # a BLOB, not text
    gbk = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}",
                                              'encoding = "gbk"'))
    res = sync(cli, gbk, "--type", "1")
    assert res[1]["new"] == 1 and res[1]["quarantined"] == 0
    code, out, _ = cli(gbk, "exams", "show", "G1", "--json", "--reveal")
    assert json.loads(out)["record"]["patientName"] == "张三"  # not "X'D5C5C8FD'"


def test_blob_in_another_encoding_is_quarantined_with_the_reason(tmp_path, cli, sqlite_pacs,
                                                                 sqlite_config):
    add(sqlite_pacs, Exam("G2"))
    blob(sqlite_pacs, "G2", "PAT_NAME", "张三".encode("gbk"))
    res = sync(cli, sqlite_config, "--type", "1")  # no encoding set: UTF-8
    assert res[1]["quarantined"] == 1
    exam = open_store(sqlite_config).exams.get("H33010200001", "G2")
    assert exam.state == "quarantined"
    assert "patientName: '<4 bytes, not utf-8 at byte 0>'" in exam.quarantine_reason
    assert "reports.view.encoding" in exam.quarantine_reason


def test_nul_in_a_name_is_stripped_with_a_warning(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("Z1"))
    add(sqlite_pacs, Exam("Z2"))
    blob(sqlite_pacs, "Z1", "PAT_NAME", "李\x00四".encode())  # a BLOB keeps the NUL
    c = sqlite3.connect(sqlite_pacs.path, isolation_level=None)  # and so does TEXT
    c.execute("UPDATE RIS_EXAM SET PAT_NAME = ? WHERE EXAM_NO = 'Z2'", ("王\x00五",))
    c.close()
    sync(cli, sqlite_config, "--type", "1")
    store = open_store(sqlite_config)
    for acc, name in (("Z1", "李四"), ("Z2", "王五")):
        exam = store.exams.get("H33010200001", acc)
        assert exam.record["patientName"] == name, acc  # not cut at the NUL
        assert "patientName: control characters removed (U+0000)" in exam.warnings


def test_check_config_refuses_injection_in_identifiers(tmp_path, cli):
    bad_view = reports_config(tmp_path, view_reports("DSN=x").replace(
        '"View_Pacs_Text_Info"', '"View_Pacs_Text_Info; DROP TABLE x"'))
    code, out, err = cli(bad_view, "check-config")
    assert code == 2 and "config OK" not in out
    assert "reports.view.name: 'View_Pacs_Text_Info; DROP TABLE x' is not a plain SQL " \
           "identifier" in err
    bad_column = reports_config(tmp_path, view_reports("DSN=x"))
    bad_column.write_text(bad_column.read_text().replace(
        'accessionNo = "EXAM_NO"', 'accessionNo = "accessionNo; DROP TABLE x --"'))
    code, out, err = cli(bad_column, "check-config")
    assert code == 2 and "reports.view.columns.accessionNo: 'accessionNo; DROP TABLE x --'" \
        in err
    # what check-config accepts, sync accepts: schema.view and "quoted" names
    good = reports_config(tmp_path, view_reports("DSN=x").replace(
        '"View_Pacs_Text_Info"', '"pacs.View_Pacs_Text_Info"'))
    code, out, _ = cli(good, "check-config")
    assert code == 0 and "config OK" in out


def test_reconciliation_finds_and_repairs_what_the_window_missed(cli, sqlite_pacs,
                                                                 sqlite_config):
    add(sqlite_pacs, Exam("R1", minutes_ago=30))
    sync(cli, sqlite_config)
    # committed late: an exam performed 3 h ago and a refund of R1 2 h ago appear only
    # now, before the window (watermark - 1 h overlap): the polls never read them
    add(sqlite_pacs, Exam("R2", minutes_ago=180))
    sqlite_pacs.run("INSERT INTO RIS_FEE VALUES (?, ?)", ("R1", ts(ago(120))))
    res = sync(cli, sqlite_config)
    assert res[1]["read"] == 1 and res[2]["read"] == 0
    store = open_store(sqlite_config)
    assert store.exams.get("H33010200001", "R2") is None

    since, until = ts(ago(60 * 5)), ts(ago(1))
    code, out, _ = cli(sqlite_config, "reconcile", "--since", since, "--until", until,
                       "--report-only", "--json")
    found = json.loads(out)
    assert code == 1 and found["repaired"] == []
    missed = {(m["type"], m["accession_no"], m["held"]) for m in found["missed"]}
    assert missed == {(1, "R2", None), (2, "R1", "synced")}  # R1 held, not withdrawn
    assert store.exams.get("H33010200001", "R2") is None  # a report changes nothing

    code, out, _ = cli(sqlite_config, "reconcile", "--since", since, "--until", until)
    assert code == 0 and "2 missed by the windows, 2 re-read" in out
    assert store.exams.get("H33010200001", "R2").state == "synced"
    assert store.tasks.find("retrieve", "acc:H33010200001:R2") is not None
    assert store.exams.get("H33010200001", "R1").state == "withdrawn"
    assert store.tasks.find("withdraw", "exam:H33010200001:R1") is not None
    code, out, _ = cli(sqlite_config, "reconcile", "--since", since, "--until", until)
    assert code == 0 and "0 missed" in out  # repaired: nothing left
    code, out, _ = cli(sqlite_config, "status")
    assert "reconciliation" in out and "repaired: 0" in out


def test_the_daemon_reconciles_on_its_schedule(cli, sqlite_pacs, sqlite_config):
    add(sqlite_pacs, Exam("S1", minutes_ago=30))
    sync(cli, sqlite_config)
    add(sqlite_pacs, Exam("S2", minutes_ago=180))  # late: before every window from now on
    assert sync(cli, sqlite_config)[1]["new"] == 0
    app = built_app(load(sqlite_config))
    assert "reports.reconcile" in app.scheduler.names()
    app.scheduler.run_now("reports.reconcile")
    store = open_store(sqlite_config)
    assert store.exams.get("H33010200001", "S2").state == "synced"
    job = {j["name"]: j for j in store.jobs.all()}["reports.reconcile"]
    assert job["outcome"] == "ok" and "1 missed by the windows, 1 re-read" in job["detail"]


def test_check_names_missing_columns(tmp_path, cli, sqlite_pacs):
    add(sqlite_pacs, Exam("K1", sex="7"))
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={sqlite_pacs.path}"))
    config.write_text(config.read_text().replace('examTime = "EXAM_DATE"',
                                                 'examTime = "EXAM_TIME"'))
    code, out, _ = cli(config, "sync", "--check")
    assert code == 1
    assert "PROBLEM: reports.view.columns.examTime = 'EXAM_TIME': the view " \
           "View_Pacs_Text_Info has no such column" in out
    assert "PROBLEM: 1 of the 1 newest rows would be quarantined for sex" not in out  # stops
    config.write_text(config.read_text().replace('examTime = "EXAM_TIME"',
                                                 'examTime = "EXAM_DATE"'))
    code, out, _ = cli(config, "sync", "--check")
    assert code == 1 and "PROBLEM: 1 of the 1 newest rows would be quarantined for sex, " \
        "e.g. sex: '7'" in out
