"""The console's JSON API over HTTP against a real `dicomgate run` (no browser): what it
shows, what it masks, who may act, and that actions go through the CLI's code paths."""

from __future__ import annotations

import json

import pytest
import requests
from console_fixtures import (
    ID_CARD,
    PATIENT,
    PHONE,
    TOKEN,
    add_exam,
    dead_task,
    start,
    stop,
)

from dicomgate.state.names import TaskState
from tests.support import run_cli


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = start(tmp_path_factory.mktemp("console"), f'[console]\noperator_token = "{TOKEN}"\n'
                                                   'refresh = "2s"\nlanguage = "zh"')
    store = d.store()
    exam_id = add_exam(store, "ACC-OK-1")
    add_exam(store, "ACC-Q-1", state="quarantined",
             reason=f"idCardNo '{ID_CARD}' has a wrong check digit (expected 18 characters)")
    d.exam_id = exam_id
    d.dead_id = dead_task(store, "1.2.3.4.5",
                          f"PACS refused C-MOVE for patient {ID_CARD}, phone {PHONE}",
                          exam_id=exam_id)
    store.close()
    yield d
    stop(d.proc)


def clear_text_free(text: str) -> None:
    for secret in (PATIENT, ID_CARD, PHONE):
        assert secret not in text, f"{secret!r} in clear"


def test_page_and_static_files_come_from_the_package(daemon):
    r = daemon.get("/console/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "static/console.js" in r.text and "http" not in r.text.split("<body>")[0].replace(
        'name="viewport"', "")  # no asset from another origin
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for name, ctype in (("console.js", "text/javascript"), ("i18n.js", "text/javascript"),
                        ("console.css", "text/css")):
        f = daemon.get(f"/console/static/{name}")
        assert f.status_code == 200 and f.headers["Content-Type"].startswith(ctype), name
    assert daemon.get("/console/static/../state.db").status_code == 404
    assert daemon.get("/console/static/nope.js").status_code == 404
    bare = daemon.get("/console", allow_redirects=False)
    assert bare.status_code == 301 and bare.headers["Location"] == "/console/"


def test_overview_counts_what_the_store_holds(daemon):
    d = daemon.get("/console/api/overview").json()
    assert d["hospital_id"] == "H33010200001"
    assert d["problems"]["dead_tasks"] == 1
    assert d["problems"]["quarantined_exams"] == 1
    assert d["health"]["checks"]["state store"] == "ok"
    health = daemon.get("/healthz").json()
    assert d["health"]["status"] == health["status"]
    assert set(d["health"]["checks"]) == set(health["checks"])
    assert d["disk"]["free_bytes"] > 0 and d["disk"]["floor_bytes"] == 1024 * 1024
    assert d["peers"] == []  # no PACS, report source or cloud configured here
    # first read today (their exam time is another day): today's, worst first
    assert d["today"]["by_stage"] == {"problem": 1, "quarantined": 1}
    assert [e["accession_no"] for e in d["today"]["exams"]] == ["ACC-OK-1", "ACC-Q-1"]
    clear_text_free(json.dumps(d, ensure_ascii=False))


def test_exam_search_detail_and_masking(daemon):
    found = daemon.get("/console/api/exams", params={"accession": "OK-1"}).json()["exams"]
    assert [e["accession_no"] for e in found] == ["ACC-OK-1"]
    assert found[0]["stage"] == "problem" and found[0]["dead_tasks"] == [daemon.dead_id]
    assert found[0]["patient"] == "欧***"
    by_day = daemon.get("/console/api/exams", params={"from": "2026-11-25",
                                                      "to": "2026-11-25"}).json()["exams"]
    assert {e["accession_no"] for e in by_day} == {"ACC-OK-1", "ACC-Q-1"}
    assert daemon.get("/console/api/exams", params={"from": "2026-11-26"}).json()["exams"] == []
    q = daemon.get("/console/api/exams", params={"stage": "quarantined"}).json()["exams"]
    assert [e["accession_no"] for e in q] == ["ACC-Q-1"]
    bad = daemon.get("/console/api/exams", params={"from": "25/11/2026"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]
    detail = daemon.get(f"/console/api/exams/{daemon.exam_id}").json()
    assert detail["record"]["patientName"] == "欧***"
    assert detail["record"]["idCardNo"] == "330102********123X"
    assert [t["id"] for t in detail["tasks"]] == [daemon.dead_id]
    clear_text_free(json.dumps(detail, ensure_ascii=False))
    assert daemon.get("/console/api/exams/999999").status_code == 404


def test_problems_list_dead_tasks_and_quarantine_masked(daemon):
    p = daemon.get("/console/api/problems").json()
    assert [t["id"] for t in p["dead_tasks"]] == [daemon.dead_id]
    assert p["dead_tasks"][0]["advice"] == "retrieve"
    assert "330102********123X" in p["dead_tasks"][0]["last_error"]
    assert [e["accession_no"] for e in p["quarantined_exams"]] == ["ACC-Q-1"]
    clear_text_free(json.dumps(p, ensure_ascii=False))


def test_session_says_read_only_without_the_token(daemon):
    s = daemon.get("/console/api/session").json()
    assert s["can_act"] is False and s["actions"] == [] and s["token_configured"] is True
    s = daemon.get("/console/api/session", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert s["can_act"] is True and s["via"] == "token" and "retry_task" in s["actions"]
    assert "reread_exam" not in s["actions"]  # no [reports]: nothing to re-read from


@pytest.mark.parametrize("token,headers,status", [
    (None, {}, 401),                                         # no credential
    ("not-the-token", {}, 403),                              # wrong credential
    (TOKEN, {"X-Console": ""}, 403),                         # not from the console page
    (TOKEN, {"Origin": "http://evil.example"}, 403),         # another site's page
])
def test_actions_are_refused_without_the_credential(daemon, token, headers, status):
    r = daemon.act("retry_task", {"task_id": daemon.dead_id}, token=token, headers=headers)
    assert r.status_code == status, r.text
    # the console's {"error"}, or the front's refusal of a foreign Origin (spec JSON)
    assert "error" in r.json() or "Origin" in r.json()["message"]
    store = daemon.store()
    try:
        assert store.tasks.get(daemon.dead_id).state == "dead"
    finally:
        store.close()


def test_get_cannot_act_and_unknown_action_is_404(daemon):
    assert daemon.get(f"/console/api/actions/retry_task?task_id={daemon.dead_id}"
                      ).status_code == 405
    r = daemon.act("drop_database", {})
    assert r.status_code == 404 and "retry_task" in r.json()["error"]
    r = daemon.act("retry_task", {"task_id": daemon.dead_id}, operator="")
    assert r.status_code == 400 and "name" in r.json()["error"]


def test_retry_with_token_requeues_and_is_audited(daemon):
    r = daemon.act("retry_task", {"task_id": daemon.dead_id}, operator="王工")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True
    store = daemon.store()
    try:
        task = store.tasks.get(daemon.dead_id)
        assert task.state == "pending" and task.attempts == 0  # what `tasks retry` leaves
        entry = store.audit.list(action="console.retry_task")[0]
        assert entry["actor"] == "console:王工@127.0.0.1"
        assert entry["subject"] == f"task:{daemon.dead_id}" and entry["outcome"] == "ok"
        assert entry["detail"]["via"] == "token"
    finally:
        store.close()
    again = daemon.act("retry_task", {"task_id": daemon.dead_id})
    assert again.status_code == 409 and "only dead or cancelled" in again.json()["message"]
    audit = daemon.get("/console/api/audit", params={"action": "console.retry_task"}).json()
    assert [e["outcome"] for e in audit["entries"]] == ["refused", "ok"]
    assert "console.retry_task" in audit["actions"]


def test_cli_retry_and_console_retry_share_one_path(daemon, tmp_path):
    """A task dead again is retried by the CLI the same way: both leave it pending."""
    store = daemon.store()
    try:
        task_id = dead_task(store, "9.8.7", "PACS refused")
    finally:
        store.close()
    r = run_cli("tasks", "retry", str(task_id), config=daemon.state_dir.parent / "dicomgate.toml")
    assert r.returncode == 0, r.stderr
    store = daemon.store()
    try:
        assert store.tasks.get(task_id).state == "pending"
    finally:
        store.close()


def test_allow_list_applies_to_the_console(tmp_path):
    d = start(tmp_path, f'[console]\noperator_token = "{TOKEN}"', allow='"10.9.9.0/24"')
    try:
        for path in ("/console/", "/console/api/overview", "/console/static/console.js"):
            r = d.get(path)
            assert r.status_code == 403, path
            assert "shim.allow" in r.json()["message"]
    finally:
        stop(d.proc)


def test_local_actions_switch_lets_this_host_act_without_token(tmp_path):
    d = start(tmp_path, "[console]\nlocal_actions = true")
    try:
        store = d.store()
        try:
            task_id = dead_task(store, "5.5.5", "PACS refused")
        finally:
            store.close()
        s = d.get("/console/api/session").json()
        assert s["can_act"] is True and s["via"] == "local"
        r = d.act("retry_task", {"task_id": task_id}, token=None, operator="IT")
        assert r.status_code == 200, r.text
        store = d.store()
        try:
            assert store.tasks.get(task_id).state == "pending"
            assert store.audit.list(action="console.retry_task")[0]["detail"]["via"] == "local"
        finally:
            store.close()
    finally:
        stop(d.proc)


def test_console_off_without_its_section(tmp_path):
    d = start(tmp_path, "")
    try:
        assert d.get("/console/").status_code == 404
    finally:
        stop(d.proc)


def test_request_to_console_is_not_a_crash_on_bad_json(daemon):
    r = requests.post(f"{daemon.base}/console/api/actions/retry_task", data=b"{nope",
                      headers={"X-Console": "1", "Authorization": f"Bearer {TOKEN}",
                               "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_retry_all_dead_is_the_cli_all_dead(daemon):
    store = daemon.store()
    try:
        ids = [dead_task(store, f"7.7.{n}", "PACS refused") for n in (1, 2)]
        # the module's daemon is shared: an earlier test may have left (or retried) others
        dead = len(store.tasks.list(state=TaskState.DEAD))
    finally:
        store.close()
    r = daemon.act("retry_all_dead", {})
    assert r.status_code == 200 and f"{dead} dead task(s)" in r.json()["message"], r.text
    store = daemon.store()
    try:
        assert [store.tasks.get(i).state for i in ids] == ["pending", "pending"]
    finally:
        store.close()
    again = daemon.act("retry_all_dead", {})
    assert again.status_code == 409 and "no dead task" in again.json()["message"]
