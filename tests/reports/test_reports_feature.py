"""The feature wiring: the scheduled poll job and the status section, through the App."""

from __future__ import annotations

from reports_pacs import Exam, insert_exam_sql

from dicomgate.config import load
from tests.support.engines import built_app


def test_scheduled_poll_and_status(sqlite_pacs, sqlite_config, cli):
    sqlite_pacs.run(insert_exam_sql(), Exam("M1").values())
    config = load(sqlite_config)
    app = built_app(config)
    assert "reports.poll" in app.scheduler.names()
    app.scheduler.run_now("reports.poll")
    job = {j["name"]: j for j in app.store.jobs.all()}["reports.poll"]
    assert job["outcome"] == "ok" and job["detail"].startswith("type 1: 1 read, 1 new")
    section = app.status_sections["reports"]()
    assert section["exams"] == {"synced": 1} and section["source"] == "view"
    assert all(section["watermarks"].values())
    code, out, _ = cli(sqlite_config, "status", "--json")
    assert code == 0 and '"reports"' in out


def test_failed_poll_is_recorded(tmp_path, cli):
    from reports_support import reports_config, view_reports

    config = load(reports_config(tmp_path, view_reports("Driver=SQLite3;Database=/nonexistent/x")))
    app = built_app(config)
    app.scheduler.run_now("reports.poll")
    job = {j["name"]: j for j in app.store.jobs.all()}["reports.poll"]
    assert job["outcome"] == "error" and "type 1: FAILED" in job["detail"]
    assert app.store.watermarks.all() == {}
