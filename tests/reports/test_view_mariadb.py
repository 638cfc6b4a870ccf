"""Mode 1 over unixODBC + MariaDB Connector/ODBC against a MariaDB server the tests start."""

from __future__ import annotations

import json

import pytest
from reports_mariadb import MariaPacs
from reports_pacs import Exam, insert_exam_sql, insert_report_sql, report_values
from reports_support import open_store, reports_config, view_reports

from dicomgate.config import load
from tests.support.engines import built_app

LONG = ("左肺下叶见结节影边界清楚大小约厘米建议随访复查𠮷野家双肺纹理清晰" * 10)[:200]


def sync(cli, config, *extra) -> tuple[int, dict[int, dict], str]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert out, err
    return code, {r["type"]: r for r in json.loads(out)}, err


@pytest.mark.parametrize("charset", ["utf8mb4", "gbk"])
def test_long_text_arrives_whole(tmp_path, cli, mariadb, charset):
    pacs = MariaPacs(mariadb, charset, text="TEXT")
    text = LONG if charset == "utf8mb4" else LONG.replace("𠮷", "吉")
    pacs.insert(insert_exam_sql(), Exam("M1").values())
    pacs.insert(insert_report_sql(), report_values("M1", text, 15))
    config = reports_config(tmp_path, view_reports(pacs.connection(),
                            'encoding = "gbk"' if charset == "gbk" else ""))
    code, res, err = sync(cli, config)
    assert code == 0, err
    exam = open_store(config).exams.get("H33010200001", "M1")
    assert exam.record["examConclusion"] == text


# Connector/ODBC 3.1's UTF-16 path hands this over as "𢓘": the last character is lost
CUT_BY_UTF16 = "𢓘㒕"


def _one_report(pacs: MariaPacs, text: str) -> None:
    pacs.insert(insert_exam_sql(), Exam("U1").values())
    pacs.insert(insert_report_sql(), report_values("U1", text, 15))


def test_text_the_drivers_utf16_path_cuts_arrives_whole(tmp_path, cli, mariadb):
    pacs = MariaPacs(mariadb, text="TEXT")
    _one_report(pacs, CUT_BY_UTF16)
    config = reports_config(tmp_path, view_reports(pacs.connection()))
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert open_store(config).exams.get("H33010200001", "U1").record["examConclusion"] == \
        CUT_BY_UTF16
    code, out, _ = cli(config, "sync", "--check", "--json")
    assert code == 0 and json.loads(out)["problems"] == []


def test_text_that_does_not_arrive_whole_stops_the_sync_and_the_check(tmp_path, cli, mariadb):
    """Decoded the driver's UTF-16 way (ODBC's default): the database's CHAR_LENGTH and
    what arrived differ, so nothing is applied and the check says what to change."""
    pacs = MariaPacs(mariadb, text="TEXT")
    _one_report(pacs, CUT_BY_UTF16)
    config = reports_config(tmp_path, view_reports(pacs.connection(),
                                                 'text_decoding = "utf-16le"'))
    code, res, _ = sync(cli, config)
    assert code == 1
    for t in (1, 3):
        error = res[t]["error"]
        assert error.startswith("text column IMPRESSION (examConclusion) does not arrive as "
                                "the database holds it: 1 of 1 newest values differ, e.g. "
                                "accession U1: 2 characters in the database, 1 arrived "
                                "through ODBC driver libmaodbc"), error
        assert 'change reports.view.text_decoding (now utf-16le; try "utf-8"' in error
    store = open_store(config)
    assert store.exams.get("H33010200001", "U1") is None
    assert store.watermarks.get("reports.type1") is None
    code, out, _ = cli(config, "sync", "--check")
    assert code == 1 and "PROBLEM: text column IMPRESSION (examConclusion)" in out
    # the daemon's daily check says so in health (/healthz 503) too
    app = built_app(load(config))
    app.scheduler.run_now("reports.check")
    assert "text column IMPRESSION (examConclusion)" in app.health()["reports"]


def test_a_connection_character_set_without_chinese_is_refused(tmp_path, cli, mariadb):
    pacs = MariaPacs(mariadb, text="TEXT")
    _one_report(pacs, "左肺下叶结节。")
    config = reports_config(tmp_path, view_reports(pacs.connection(CHARSET="latin1")))
    code, res, _ = sync(cli, config)
    assert code == 1 and "the connection's character set is latin1" in res[1]["error"]
    assert "add CHARSET=utf8mb4 to reports.view.connection" in res[1]["error"]
    assert open_store(config).exams.get("H33010200001", "U1") is None


def test_a_database_clock_two_hours_behind_is_refused_naming_both(tmp_path, cli, mariadb):
    """The server's clock as its sessions see it (SET timestamp, run by the driver on
    connecting): two hours behind, every window would select the wrong rows."""
    pacs = MariaPacs(mariadb, text="TEXT")
    _one_report(pacs, "未见异常。")
    behind = pacs.connection(INITSTMT="SET timestamp = UNIX_TIMESTAMP() - 7200")
    config = reports_config(tmp_path, view_reports(behind))
    code, out, _ = cli(config, "sync", "--check", "--json")
    check = json.loads(out)
    assert code == 1
    problem = next(p for p in check["problems"] if p.startswith("the database's clock"))
    assert "by NOW(), the gateway's" in problem and "2 h 0 min apart" in problem
    database, gateway = check["clock"]["NOW()"], check["at"]
    assert f"clock says {database[:13]}" in problem
    assert f"the gateway's {gateway.replace('T', ' ')[:13]}" in problem
    code, out, _ = cli(reports_config(tmp_path, view_reports(pacs.connection())), "sync",
                       "--check", "--json")
    assert code == 0 and json.loads(out)["problems"] == []
