"""Time columns in the site's own format, over real unixODBC + the SQLite3 driver.

Each PACS keeps its times differently; the rows of a window must be read whatever
the format, and a format the window cannot select by must stop the sync loudly.
Every test would fail against a window compared as `yyyy-MM-dd HH:mm:ss` text: no row
would be read.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from reports_pacs import TZ, Exam, ago, insert_exam_sql, insert_report_sql, report_values
from reports_support import Pacs, open_store, reports_config, view_reports

from dicomgate.config import load
from tests.support.engines import built_app

TIME_COLUMNS = (("RIS_EXAM", "EXAM_DATE"), ("RIS_REPORT", "REPORT_DATE"),
                ("RIS_REPORT", "AUDIT_DATE"), ("RIS_REPORT", "MODIFY_DATE"),
                ("RIS_FEE", "REFUND_DATE"))

# format -> (declared column type, SQL turning the stored yyyy-MM-dd HH:mm:ss local time
# into that format)
FORMATS = {
    "slashes": ("TEXT", "replace({c}, '-', '/')"),
    "chinese": ("TEXT", "strftime('%Y年%m月%d日 %H时%M分%S秒', {c})"),
    "digits": ("TEXT", "strftime('%Y%m%d%H%M%S', {c})"),
    "iso_utc": ("TEXT", "strftime('%Y-%m-%dT%H:%M:%SZ', {c}, '-8 hours')"),
    "iso_offset": ("TEXT", "replace({c}, ' ', 'T') || '+08:00'"),
    "epoch": ("INTEGER", "CAST(strftime('%s', {c}, '-8 hours') AS INTEGER)"),
    "real_epoch": ("REAL", "CAST(strftime('%s', {c}, '-8 hours') AS REAL) + 0.25"),
    "digits_number": ("NUMERIC", "CAST(strftime('%Y%m%d%H%M%S', {c}) AS INTEGER)"),
}


def convert(pacs: Pacs, sql: str) -> None:
    for table, column in TIME_COLUMNS:
        pacs.run(f"UPDATE {table} SET {column} = {sql.format(c=column)} "
                 f"WHERE {column} IS NOT NULL")


def sync(cli, config, *extra) -> tuple[int, dict[int, dict], str]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert out, err
    return code, {r["type"]: r for r in json.loads(out)}, err


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)  # kept with the offset the PACS gave


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_window_reads_every_time_format(tmp_path, cli, name):
    kind, sql = FORMATS[name]
    pacs = Pacs(tmp_path / "pacs.db", ts=kind)
    exam_time = ago(30)
    pacs.run(insert_exam_sql(), Exam("T1", minutes_ago=30).values())
    pacs.run(insert_exam_sql(), Exam("T2", minutes_ago=60 * 30).values())  # before the window
    pacs.run(insert_report_sql(), report_values("T1", "未见异常。", 20))
    pacs.run("INSERT INTO RIS_FEE VALUES (?, ?)", ("T2", (ago(60 * 29)).strftime(
        "%Y-%m-%d %H:%M:%S")))  # refunded before the window too
    convert(pacs, sql)
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))

    code, res, err = sync(cli, config)
    assert code == 0, err
    assert [res[t]["read"] for t in (1, 2, 3, 4)] == [1, 0, 1, 0]
    store = open_store(config)
    t1 = store.exams.get("H33010200001", "T1")
    late = instant(t1.record["examTime"]) - exam_time.replace(tzinfo=TZ)
    assert dt.timedelta(0) <= late <= dt.timedelta(seconds=5)  # ago() called twice
    audit = instant(t1.record["auditTime"])  # the clock may tick between two ago() calls
    assert dt.timedelta(0) <= ago(20).replace(tzinfo=TZ) - audit <= dt.timedelta(seconds=5)
    assert t1.report_version == 1 and t1.state == "reported"
    assert store.exams.get("H33010200001", "T2") is None
    code, res, _ = sync(cli, config)  # the overlap again: nothing new
    assert code == 0 and res[1]["unchanged"] == 1 and res[3]["tasks"] == 0

    code, out, _ = cli(config, "sync", "--check", "--json")
    check = json.loads(out)
    assert code == 0 and check["ok"], check["problems"]
    assert check["time_columns"]["examTime"]["column"] == "EXAM_DATE"


def test_one_careless_row_is_quarantined_and_the_rest_flows(tmp_path, cli):
    """`not a time` (and a row in another format) among good rows: the format is learned
    from the rows that parse; the bad row is quarantined with its value; a good row
    written later is read by the next poll."""
    pacs = Pacs(tmp_path / "pacs.db")
    for i in range(60):  # more than the newest values the format is sampled from
        pacs.run(insert_exam_sql(), Exam(f"G{i:02d}", minutes_ago=100 - i).values())
    pacs.run(insert_exam_sql(), Exam("BAD", minutes_ago=30).values())
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = 'not a time' WHERE EXAM_NO = 'BAD'")
    pacs.run(insert_exam_sql(), Exam("SLASH", minutes_ago=35).values())
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = replace(EXAM_DATE, '-', '/') "
             "WHERE EXAM_NO = 'SLASH'")
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert res[1]["new"] == 61 and res[1]["quarantined"] == 1 and res[1]["error"] is None
    store = open_store(config)
    bad = store.exams.get("H33010200001", "BAD")
    assert bad.state == "quarantined"
    assert bad.quarantine_reason.startswith("examTime: 'not a time' (expected yyyy-MM-dd")
    assert store.exams.get("H33010200001", "SLASH").state == "synced"
    assert store.tasks.find("retrieve", "acc:H33010200001:BAD") is None
    pacs.run(insert_exam_sql(), Exam("LATE", minutes_ago=1).values())
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert res[1]["new"] == 1 and store.exams.get("H33010200001", "LATE").state == "synced"
    code, out, _ = cli(config, "sync", "--check", "--json")
    check = json.loads(out)
    assert check["problems"] == [] and check["time_columns"]["examTime"]["odd"] == 2
    assert any("2 value(s) of EXAM_DATE (examTime) are not 'yyyy-MM-dd HH:mm:ss'" in w
               for w in check["warnings"])
    app = built_app(load(config))
    app.scheduler.run_now("reports.poll")
    assert app.health()["reports"] is None


def test_a_column_mostly_not_times_fails_loudly_and_names_the_column(tmp_path, cli):
    pacs = Pacs(tmp_path / "pacs.db")
    for i in range(3):
        pacs.run(insert_exam_sql(), Exam(f"M{i}", minutes_ago=30 + i).values())
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = '检查于' || EXAM_DATE WHERE EXAM_NO <> 'M0'")
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    code, res, _ = sync(cli, config)
    assert code == 1
    error = res[1]["error"]
    assert "EXAM_DATE (examTime)" in error and "CONVERT(varchar(19), col, 120)" in error
    assert "检查于" in error  # the odd sample value is shown
    assert res[3]["error"] is None  # the other types carry on
    assert open_store(config).watermarks.get("reports.type1") is None
    code, out, _ = cli(config, "status")
    assert "- type 1 (performed): view column EXAM_DATE (examTime)" in out

    code, out, _ = cli(config, "sync", "--check")
    assert code == 1 and "PROBLEM: view column EXAM_DATE (examTime)" in out
    # the daemon: the check job at start feeds health (-> /healthz 503) and status
    app = built_app(load(config))
    assert "reports.check" in app.scheduler.names()
    app.scheduler.run_now("reports.check")
    assert "EXAM_DATE (examTime)" in app.health()["reports"]
    app.scheduler.run_now("reports.poll")  # the scheduled poll says which type stopped
    assert "type 1 (performed): view column EXAM_DATE" in app.health()["reports"]
    code, out, _ = cli(config, "status")
    assert code == 0 and "EXAM_DATE (examTime)" in out


def test_values_not_zero_padded_are_refused_with_what_to_set(tmp_path, cli):
    pacs = Pacs(tmp_path / "pacs.db")
    pacs.run(insert_exam_sql(), Exam("N1", minutes_ago=30).values())
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = '2026/1/5 2:55:14'")
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    code, res, _ = sync(cli, config, "--type", "1")
    assert code == 1 and "'2026/1/5 2:55:14'" in res[1]["error"]
    assert "DATETIME column" in res[1]["error"]


def test_configured_format_that_does_not_match_says_what_to_set(tmp_path, cli):
    pacs = Pacs(tmp_path / "pacs.db")
    pacs.run(insert_exam_sql(), Exam("C1", minutes_ago=30).values())
    convert(pacs, FORMATS["slashes"][1])
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}",
                                                 'time_format = "yyyyMMddHHmmss"'))
    code, res, _ = sync(cli, config, "--type", "1")
    assert code == 1
    assert 'set reports.view.time_formats.examTime = "yyyy/MM/dd HH:mm:ss"' in res[1]["error"]
    fixed = reports_config(tmp_path, view_reports(
        f"Driver=SQLite3;Database={pacs.path}",
        '[reports.view.time_formats]\nexamTime = "yyyy/MM/dd HH:mm:ss"'))
    code, res, err = sync(cli, fixed, "--type", "1")
    assert code == 0 and res[1]["new"] == 1, err


def test_bad_time_format_in_config_is_refused_by_check_config(tmp_path, cli):
    config = reports_config(tmp_path, view_reports("DSN=x", 'time_format = "dd/MM/yyyy HH:mm:ss"'))
    code, _, err = cli(config, "check-config")
    assert code == 2 and "reports.view.time_format: 'dd/MM/yyyy HH:mm:ss' does not sort" in err


def test_the_daemon_verifies_the_formats_again(tmp_path, cli):
    """A long-running poller learned the format; a row in another format appears later:
    the next reconciliation pass verifies the columns again and the polls read it."""
    pacs = Pacs(tmp_path / "pacs.db")
    pacs.run(insert_exam_sql(), Exam("L1", minutes_ago=30).values())
    pacs.run(insert_exam_sql(), Exam("L0", minutes_ago=40).values())
    config = reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={pacs.path}"))
    app = built_app(load(config))
    app.scheduler.run_now("reports.poll")
    assert app.health()["reports"] is None
    pacs.run(insert_exam_sql(), Exam("L2", minutes_ago=20).values())
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = replace(EXAM_DATE, '-', '/') "
             "WHERE EXAM_NO = 'L2'")
    app.scheduler.run_now("reports.poll")  # the format it knows: L2 is not selected...
    assert open_store(config).exams.get("H33010200001", "L2") is None
    app.scheduler.run_now("reports.reconcile")  # ...until the columns are verified again
    app.scheduler.run_now("reports.poll")
    assert app.health()["reports"] is None
    assert open_store(config).exams.get("H33010200001", "L2").state == "synced"
