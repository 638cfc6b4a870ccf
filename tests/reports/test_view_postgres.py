"""Mode 1 over unixODBC + psqlODBC against a PostgreSQL server the tests start.

Includes a real connection drop in the middle of a sync: the view calls a function
that terminates its own backend when it reaches a marked row.
"""

from __future__ import annotations

import json

import pytest
from reports_pacs import VIEW, Exam, insert_exam_sql, insert_report_sql, report_values
from reports_pg import PgPacs
from reports_support import open_store, reports_config, view_reports


@pytest.fixture
def pg_pacs(postgres) -> PgPacs:
    return PgPacs(postgres)


def sync(cli, config, *extra) -> tuple[int, dict[int, dict], str]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert out, err
    return code, {r["type"]: r for r in json.loads(out)}, err


def test_postgres_view_four_types(tmp_path, cli, pg_pacs):
    pg_pacs.insert(insert_exam_sql(), Exam("P1", study_uid="1.2.156.1").values())
    pg_pacs.insert(insert_exam_sql(), Exam("P2", name="司马懿", sex=None).values())
    pg_pacs.insert(insert_report_sql(), report_values("P1", "左肺下叶炎症。", 15))
    config = reports_config(tmp_path, view_reports(pg_pacs.connection()))
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert [res[t]["read"] for t in (1, 2, 3, 4)] == [2, 0, 1, 0]
    pg_pacs.run("UPDATE RIS_REPORT SET IMPRESSION='左肺下叶炎症，较前吸收。', "
                "MODIFY_DATE=now()::timestamp(0) - interval '1 minute' WHERE EXAM_NO='P1'")
    pg_pacs.run("INSERT INTO RIS_FEE VALUES ('P2', now()::timestamp(0) - interval '1 minute')")
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert res[4]["read"] == 1 and res[2]["read"] == 1
    store = open_store(config)
    p1 = store.exams.get("H33010200001", "P1")
    assert p1.report_version == 2
    assert store.exams.version(p1.id, 2)["record"]["examConclusion"] == "左肺下叶炎症，较前吸收。"
    p2 = store.exams.get("H33010200001", "P2")
    assert p2.record["patientName"] == "司马懿" and p2.record["sex"] is None
    assert p2.state == "withdrawn"
    assert store.tasks.find("retrieve", "acc:H33010200001:P2").state == "cancelled"
    assert store.tasks.find("withdraw", "exam:H33010200001:P2").state == "pending"
    # the session timezone is the gateway's: PACS times were read as Asia/Shanghai
    assert p1.record["examTime"].endswith("+08:00")


def test_connection_drop_mid_sync_resumes_without_loss(tmp_path, cli, pg_pacs):
    for i in range(30):
        pg_pacs.insert(insert_exam_sql(), Exam(f"Q{i:02d}", minutes_ago=40 - i).values())
    pg_pacs.run("INSERT INTO chaos VALUES ('Q20')")
    # a server-side cursor: rows are fetched 5 at a time, so the drop happens mid-read
    conn = pg_pacs.connection(UseDeclareFetch="1", Fetch="5")
    config = reports_config(tmp_path, view_reports(conn).replace("batch_size = 7",
                                                               "batch_size = 5"))
    code, res, err = sync(cli, config)
    assert code == 1
    assert res[1]["error"] and "reading view View_Pacs_Text_Info failed" in res[1]["error"]
    assert 0 < res[1]["read"] < 30  # some batches were committed before the drop
    assert all(res[t]["error"] is None for t in (2, 3, 4))  # reconnected for the others
    store = open_store(config)
    assert store.watermarks.get("reports.type1") is None  # not advanced past the failure
    first = res[1]["new"]

    pg_pacs.run("DELETE FROM chaos")
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert res[1]["read"] == 30 and res[1]["new"] == 30 - first
    assert res[1]["unchanged"] == first
    assert store.watermarks.get("reports.type1") is not None
    retrieves = store.tasks.list(kind="retrieve")
    assert len(retrieves) == 30 and len({t.key for t in retrieves}) == 30


def test_postgres_varchar_time_columns_in_the_sites_format(tmp_path, cli, postgres):
    """varchar times: PostgreSQL compares them as text, so the bounds are bound in the
    column's own format (a timestamp bound would not even compare with varchar)."""
    pacs = PgPacs(postgres, ts="VARCHAR(32)")
    pacs.insert(insert_exam_sql(), Exam("V1", minutes_ago=30).values())
    pacs.insert(insert_exam_sql(), Exam("V2", minutes_ago=60 * 30).values())  # too old
    pacs.insert(insert_report_sql(), report_values("V1", "双肺未见异常。", 20))
    pacs.run("UPDATE RIS_EXAM SET EXAM_DATE = replace(EXAM_DATE, '-', '/')")
    pacs.run("UPDATE RIS_REPORT SET AUDIT_DATE = translate(AUDIT_DATE, '-: ', ''), "
             "REPORT_DATE = translate(REPORT_DATE, '-: ', '')")
    config = reports_config(tmp_path, view_reports(pacs.connection()))
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert [res[t]["read"] for t in (1, 2, 3, 4)] == [1, 0, 1, 0]
    store = open_store(config)
    v1 = store.exams.get("H33010200001", "V1")
    assert v1.report_version == 1 and v1.record["examTime"].endswith("+08:00")
    assert store.exams.get("H33010200001", "V2") is None
    code, out, _ = cli(config, "sync", "--check", "--json")
    check = json.loads(out)
    assert code == 0, check["problems"]
    assert check["time_columns"]["examTime"]["format"] == "yyyy/MM/dd HH:mm:ss"
    assert check["time_columns"]["auditTime"]["format"] == "yyyyMMddHHmmss"

    # one row in another format among the 50 newest the format is learned from: the
    # window alone would never select it, so it is read besides the window and taken by
    # the time it parses to (the rows without patient or modality are quarantined)
    pacs.run("INSERT INTO RIS_EXAM (EXAM_NO, EXAM_DATE) SELECT 'B' || g, to_char(now() - "
             "g * interval '1 minute', 'YYYY/MM/DD HH24:MI:SS') FROM generate_series(1, 55) g")
    pacs.insert(insert_exam_sql(), Exam("V3", minutes_ago=10).values())  # yyyy-MM-dd
    code, res, err = sync(cli, config)
    assert code == 0, err
    assert store.exams.get("H33010200001", "V3").state == "synced"
    assert res[1]["quarantined"] == 55 and res[1]["new"] == 1
    code, out, _ = cli(config, "sync", "--check", "--json")
    assert json.loads(out)["time_columns"]["examTime"]["odd"] == 1


def test_a_text_column_the_database_cannot_count_is_read_unchecked(tmp_path, cli, pg_pacs):
    """char_length() does not take json: the rows still flow, the check says why the text
    was not checked."""
    pg_pacs.insert(insert_exam_sql(), Exam("J1").values())
    pg_pacs.insert(insert_report_sql(), report_values("J1", "未见异常。", 15))
    pg_pacs.run("DROP VIEW View_Pacs_Text_Info; ALTER TABLE RIS_REPORT ALTER COLUMN REPORTER "
                "TYPE json USING to_json(REPORTER); " + VIEW.format(acc="e.EXAM_NO"))
    config = reports_config(tmp_path, view_reports(pg_pacs.connection()))
    code, res, err = sync(cli, config)
    assert code == 0 and res[3]["new"] + res[1]["new"] == 1, err
    assert "reports.view_text_unchecked" in err
    code, out, _ = cli(config, "sync", "--check", "--json")
    check = json.loads(out)
    assert any(w.startswith("the text of the view could not be checked against the "
                            "database's char_length()") for w in check["warnings"])
