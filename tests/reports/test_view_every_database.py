"""The same view on every database server the suite runs (SQLite file, PostgreSQL whose
server zone is UTC, MariaDB whose server zone is UTC; the gateway in Asia/Shanghai): the
report text arrives in the cloud character for character, rows written "now" are read by
the next poll, and careless or foreign rows are quarantined while every other row flows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reports_pacs import TZ, Exam, ago, insert_exam_sql, insert_report_sql, report_values
from reports_sites import DATABASES, cloud_app, make_site, push_reports

from dicomgate.console.views import Views
from dicomgate.reports import make_poller, reconcile, run_check
from dicomgate.sandbox.cloud_api import CloudApi

HOSPITAL = "H33010200001"
# 200 characters: common and rare CJK, 4-byte ones (CJK Extension B), full-width punctuation
REPORT = ("右肺上叶尖段见一磨玻璃结节，大小约8×6毫米，边界清楚；𠮷𡈽𤋮𪚥龘靐齉，"
          "纵隔淋巴结未见肿大。双侧胸腔未见积液。" * 8)[:200]


@pytest.fixture
def cloud():
    server = CloudApi().start()
    yield server
    server.stop()


@pytest.fixture(params=DATABASES)
def db(request) -> str:
    return request.param


def sent(cloud: CloudApi, acc: str) -> dict:
    return cloud.reports[(HOSPITAL, acc)]


def test_a_report_of_200_cjk_characters_arrives_character_identical(request, tmp_path, db,
                                                                     cloud):
    site = make_site(request, tmp_path, db)
    site.add(insert_exam_sql(), Exam("R1", name="𠮷田").values())
    site.add(insert_report_sql(), report_values("R1", REPORT, 15))
    app = cloud_app(tmp_path, site, cloud.url)
    app.scheduler.run_now("reports.poll")
    assert push_reports(app) == ["done"]
    body = sent(cloud, "R1")
    assert len(REPORT) == 200 and body["examConclusion"] == REPORT
    assert body["patientName"] == "𠮷田" and body["examFindings"] == "双肺纹理清晰。"


# CJK Unified Ideographs, Extension A and B (4-byte in UTF-8), punctuation, ASCII
CJK = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                st.characters(min_codepoint=0x3400, max_codepoint=0x4DBF),
                st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),
                st.sampled_from("，。；：、（）×%0123456789ABCxyz"))


@pytest.mark.parametrize("db_name", DATABASES)
def test_generated_report_texts_arrive_whole(request, tmp_path, db_name, cloud):
    site = make_site(request, tmp_path, db_name)
    app = cloud_app(tmp_path, site, cloud.url)
    numbers = itertools.count()

    @settings(max_examples=8, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.text(CJK, min_size=1, max_size=300).map(str.strip).filter(bool))
    def arrives(text):
        acc = f"H{next(numbers):03d}"
        site.add(insert_exam_sql(), Exam(acc).values())
        site.add(insert_report_sql(), report_values(acc, text, 15))
        app.scheduler.run_now("reports.poll")
        assert push_reports(app) == ["done"]
        assert sent(cloud, acc)["examConclusion"] == text

    arrives()


@pytest.mark.parametrize(("db_name", "ts"), [
    ("sqlite", "TEXT"), ("postgres", "TIMESTAMP"), ("postgres", "TIMESTAMPTZ"),
    ("postgres", "VARCHAR(19)"), ("mariadb", "DATETIME"), ("mariadb", "TIMESTAMP NULL"),
    ("mariadb", "VARCHAR(19)")])
def test_rows_written_now_are_read_by_the_next_poll(request, tmp_path, db_name, ts, cloud):
    site = make_site(request, tmp_path, db_name, ts)
    site.add(insert_exam_sql(), Exam("OLD", minutes_ago=30).values())
    if site.now_sql:  # an instant: the database's own now, shifted by SQL
        site.run(f"UPDATE RIS_EXAM SET EXAM_DATE = {site.now_sql} - INTERVAL '30' MINUTE")
    app = cloud_app(tmp_path, site, cloud.url)
    app.scheduler.run_now("reports.poll")
    assert app.store.exams.get(HOSPITAL, "OLD").state == "synced"

    site.add(insert_exam_sql(), Exam("NOW", minutes_ago=0).values())
    site.add(insert_report_sql(), report_values("NOW", "未见异常。", 0))
    if site.now_sql:
        site.run(f"UPDATE RIS_EXAM SET EXAM_DATE = {site.now_sql} WHERE EXAM_NO = 'NOW'")
        site.run(f"UPDATE RIS_REPORT SET AUDIT_DATE = {site.now_sql}, REPORT_DATE = "
                 f"{site.now_sql} WHERE EXAM_NO = 'NOW'")
    time.sleep(1.1)  # the next poll's window ends after the row's second
    app.scheduler.run_now("reports.poll")
    exam = app.store.exams.get(HOSPITAL, "NOW")
    assert exam is not None and exam.state == "reported", app.health()
    written = ago(0).replace(tzinfo=TZ)
    held = exam.record["examTime"]
    assert abs(dt.datetime.fromisoformat(held) - written) < dt.timedelta(seconds=10), held
    assert push_reports(app) == ["done"] and sent(cloud, "NOW")["examConclusion"] == "未见异常。"
    # the check agrees: the database's clock, read as the view's times are, is ours
    check = run_check(app)
    assert check.ok, check.public()
    if db_name != "sqlite":
        assert check.clock, check.public()
        # both servers keep UTC: worth a look for naive columns the database fills itself
        assert any(w.startswith("the database server's own zone is ") and "UTC+00:00" in w
                   and "read 8 h 0 min off" in w for w in check.warnings), check.warnings
    # the reconciliation over the last hours sees both rows and misses none
    poller = make_poller(app)
    try:
        result = reconcile.reconcile(poller, ago(180), ago(-1), repair=False)
    finally:
        poller.close()
    assert result.errors == [] and result.checked >= 2 and result.missed == [], \
        result.public()


def test_a_foreign_row_and_a_bad_row_are_quarantined_while_the_rest_flows(
        request, tmp_path, db, cloud):
    site = make_site(request, tmp_path, db)
    for i in range(12):
        site.add(insert_exam_sql(), Exam(f"OK{i:02d}", minutes_ago=50 - i).values())
        site.add(insert_report_sql(), report_values(f"OK{i:02d}", f"报告{i}：未见异常。", 20))
    site.add(insert_exam_sql(), Exam("FOREIGN", minutes_ago=40).values())
    site.run("UPDATE RIS_EXAM SET HOSP_CODE = 'H99999999999' WHERE EXAM_NO = 'FOREIGN'")
    site.add(insert_report_sql(), report_values("FOREIGN", "他院报告。", 20))
    site.add(insert_exam_sql(), Exam("BAD", minutes_ago=35, modality=None).values())
    site.add(insert_report_sql(), report_values("BAD", "未见异常。", 20))
    site.add(insert_exam_sql(), Exam("HUGE", minutes_ago=35).values())
    site.add(insert_report_sql(), report_values("HUGE", "很长" * 15_000, 20))
    app = cloud_app(tmp_path, site, cloud.url)
    app.scheduler.run_now("reports.poll")
    assert app.health()["reports"] is None
    assert sorted(push_reports(app)) == ["done"] * 12
    assert sorted(acc for _, acc in cloud.reports) == [f"OK{i:02d}" for i in range(12)]

    store = app.store
    foreign = store.exams.get("H99999999999", "FOREIGN")
    assert foreign.state == "quarantined" and foreign.quarantine_reason.startswith(
        "hospitalId: 'H99999999999' (expected one of the hospitals this gateway serves: "
        "H33010200001")
    assert store.tasks.list(exam_id=foreign.id) == []
    audit = store.audit.list("reports.foreign_hospital_quarantined")
    assert [a["subject"] for a in audit] == ["exam:H99999999999:FOREIGN"]
    assert audit[0]["detail"] == {"hospitalId": "H99999999999", "served": [HOSPITAL]}
    bad = store.exams.get(HOSPITAL, "BAD")
    assert bad.quarantine_reason == ("modality: missing (expected a value; required for "
                                     "type 1 (performed))")
    huge = store.exams.get(HOSPITAL, "HUGE")
    assert huge.state == "quarantined" and huge.quarantine_reason.startswith(
        "examConclusion: '<30000 characters>' (expected at most 20000 characters")
    assert huge.record["examConclusion"] is None  # nothing cut, nothing kept of it
    problems = Views(app).problems()["quarantined_exams"]
    assert sorted(p["accession_no"] for p in problems) == ["BAD", "FOREIGN", "HUGE"]
    # the next poll: nothing new is pushed, nothing audited twice
    app.scheduler.run_now("reports.poll")
    assert push_reports(app) == [] and len(cloud.reports) == 12
    assert len(store.audit.list("reports.foreign_hospital_quarantined")) == 1


def test_group_hospital_codes_are_served(request, tmp_path, cloud):
    site = make_site(request, tmp_path, "sqlite")
    site.add(insert_exam_sql(), Exam("G1").values())
    site.run("UPDATE RIS_EXAM SET HOSP_CODE = 'H33010200002'")
    site.add(insert_report_sql(), report_values("G1", "未见异常。", 20))
    app = cloud_app(tmp_path, site, cloud.url,
                    gateway_extra='group_hospital_ids = ["H33010200002"]')
    app.scheduler.run_now("reports.poll")
    assert push_reports(app) == ["done"] and ("H33010200002", "G1") in cloud.reports
