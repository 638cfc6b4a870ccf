"""The console in a real browser (headless Debian Chromium via Selenium) against the demo:
`dicomgate run` between the sandbox hospital (Orthanc PACS, ODBC report view) and cloud.
A screenshot of every page is written under the test's temp dir."""

from __future__ import annotations

import io
import time

import pytest
import requests
from browser import Browser, missing
from selenium.webdriver.common.by import By

from dicomgate.sandbox.demo import Demo
from dicomgate.sandbox.studies import Patient, StudySpec, ct_instances
from dicomgate.state import Store
from dicomgate.state.kinds import Retrieve
from dicomgate.state.names import Fact
from tests.support import wait_until


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = Demo(tmp_path_factory.mktemp("demo"), out=io.StringIO(), echo_interval="2s")
    try:
        d.start()
        progress = d.wait(timeout=180)
        assert all(p.done() for p in progress), d.out.getvalue()
        d.check_qr(progress)  # the PACS prints its reports: QR codes issued
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser(tmp_path):
    why = missing()
    if why:
        pytest.fail(why)
    b = Browser(tmp_path)
    yield b
    b.close()


def personal_data(demo: Demo) -> list[str]:
    return [v for e in demo.exams for v in (e.row["patientName"], e.row["idCardNo"])]


def assert_masked(demo: Demo, b: Browser, page: str) -> None:
    html = b.source()
    for secret in personal_data(demo):
        assert secret not in html, f"{secret!r} in clear on {page}"
    fits(b, page)


def fits(b: Browser, page: str) -> None:
    """Usable at 1366x768: the page itself never scrolls sideways (wide tables scroll
    inside their own panel)."""
    width, view = b.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= view, f"{page} is {width}px wide in a {view}px window"


def test_overview_shows_the_three_demo_exams_delivered(demo, browser, shots):
    browser.open(demo.console_url + "#overview")
    legend = browser.wait("3 delivered today", lambda: [
        e for e in browser.css('[data-test="today-delivered"]') if e.text.endswith(" 3")])
    assert "已送达" in legend[0].text  # Chinese by default
    rows = browser.wait("today's exam rows", lambda: browser.css("#today-exams tr[data-exam]")
                        if len(browser.css("#today-exams tr[data-exam]")) == 3 else None)
    accessions = {e.spec.accession for e in demo.exams}
    assert {r.get_attribute("data-exam") for r in rows} == accessions
    assert {r.get_attribute("data-stage") for r in rows} == {"delivered"}
    for r, exam in ((r, next(e for e in demo.exams
                             if e.spec.accession == r.get_attribute("data-exam"))) for r in rows):
        n = len(exam.sop_uids)
        assert f"{n} / {n} / {n}" in r.text  # expected / received / delivered
        assert "已出码" in r.text  # the QR code was issued
    peers = {p.get_attribute("data-test"): p.get_attribute("data-ok")
             for p in browser.css(".peer")}
    assert peers == {"peer-pacs": "true", "peer-reports": "true",
                     "peer-cloud_dicomweb": "true", "peer-cloud_api": "true"}
    assert browser.css('[data-test="health-status"]')[0].text == "正常"
    assert browser.css('[data-test="count-dead_tasks"]')[0].text == "0"
    assert_masked(demo, browser, "overview")
    browser.screenshot(shots / "overview.png")


def test_exam_page_search_and_detail_are_masked(demo, browser, shots):
    exam = demo.exams[0]
    browser.open(demo.console_url + "#exams")
    browser.wait("the exam list", lambda: len(browser.css("#exam-list tr[data-exam]")) == 3)
    box = browser.driver.find_element(By.ID, "f-accession")
    box.send_keys(exam.spec.accession[-3:])
    browser.driver.find_element(By.CSS_SELECTOR, "#exam-filters button[type=submit]").click()
    browser.wait("one exam found", lambda: [r.get_attribute("data-exam") for r in browser.css(
        "#exam-list tr[data-exam]")] == [exam.spec.accession])
    browser.css(f'[data-test="exam-{exam.spec.accession}"]')[0].click()
    record = browser.wait("the exam detail", lambda: browser.css('[data-test="record"]'))
    name = exam.row["patientName"]
    assert f"{name[0]}*" in record[0].text and name not in record[0].text
    assert exam.row["idCardNo"][:6] + "********" in record[0].text
    detail = browser.driver.find_element(By.ID, "exam-detail").text
    assert "取回影像" in detail and "上传影像" in detail and "推送报告" in detail  # its tasks
    assert_masked(demo, browser, "exam detail")
    browser.screenshot(shots / "exam-detail.png")


def test_without_the_token_no_action_is_offered_or_accepted(demo, browser, shots):
    task_id, _spec, _instances = dead_retrieve(demo)
    browser.open(demo.console_url + "#problems")
    browser.wait("the dead task row", lambda: browser.css(f'tr[data-task="{task_id}"]'))
    assert browser.driver.find_element(By.ID, "readonly-hint").is_displayed()
    assert browser.css("button.act") == []
    r = requests.post(demo.console_url + "api/actions/retry_task", json={"task_id": task_id},
                      headers={"X-Console": "1", "X-Operator": "x"}, timeout=10)
    assert r.status_code == 401
    assert state_of(demo, task_id) == "dead"
    assert_masked(demo, browser, "problems")
    browser.screenshot(shots / "problems-read-only.png")


def test_dead_task_retried_from_problems_runs_again(demo, browser, shots):
    task_id, spec, instances = dead_retrieve(demo)
    for data in instances:  # the images reach the PACS after all
        demo.pacs.upload(data)
    browser.open(demo.console_url + "#problems")
    row = browser.wait("the dead task row", lambda: browser.css(f'tr[data-task="{task_id}"]'))
    assert "PACS" in row[0].text  # the advice, written for a person
    sign_in(browser, "李工程师", demo.console_token)
    button = browser.wait("the retry button", lambda: browser.css(
        f'[data-test="retry-{task_id}"]'))
    browser.screenshot(shots / "problems-operator.png")
    button[0].click()
    browser.accept_confirm()
    notice = browser.wait("the outcome notice", lambda: browser.css('[data-test="notice"]'))
    assert "完成" in notice[0].text
    wait_until(lambda: state_of(demo, task_id) == "done", 60, 0.3, "the retried task to finish")
    store = Store(demo.dir / "state" / "state.db")
    try:
        assert len(store.instances.sop_uids(spec.study_uid)) == len(instances)
        entry = store.audit.list(action="console.retry_task")[0]
        assert entry["actor"] == "console:李工程师@127.0.0.1" and entry["outcome"] == "ok"
    finally:
        store.close()
    browser.wait("the row to leave Problems", lambda: not browser.css(
        f'tr[data-task="{task_id}"]'), timeout=15)
    browser.open(demo.console_url + "#audit")
    browser.wait("the audit entry", lambda: "李工程师" in browser.driver.find_element(
        By.ID, "audit").text)
    assert_masked(demo, browser, "audit")
    browser.screenshot(shots / "audit.png")


def test_english_switch(demo, browser, shots):
    browser.open(demo.console_url + "#exams")
    browser.wait("Chinese tabs", lambda: "检查" in browser.driver.find_element(By.ID, "tabs").text)
    browser.driver.find_element(By.ID, "lang").click()
    browser.wait("English tabs", lambda: browser.driver.find_element(
        By.ID, "tabs").text.split()[:2] == ["Overview", "Exams"])
    assert browser.driver.execute_script("return document.documentElement.lang") == "en"
    browser.wait("English column heads", lambda: "Accession no." in browser.driver.find_element(
        By.ID, "exam-list").text)
    browser.open(demo.console_url + "#overview")  # the choice survives a reload
    browser.wait("English overview", lambda: "Today's exams" in browser.text())
    assert "delivered" in browser.text()
    browser.screenshot(shots / "overview-en.png")
    browser.driver.find_element(By.ID, "lang").click()
    browser.wait("Chinese again", lambda: "今日检查" in browser.text())


# -- helpers ------------------------------------------------------------------------------
def dead_retrieve(demo: Demo) -> tuple[int, StudySpec, list[bytes]]:
    """A retrieve for a study the PACS does not have: one attempt allowed, so it dies."""
    spec = StudySpec(accession=f"LATE{time.time_ns() % 10**8}", modality="CT",
                     patient=Patient("P2001", "Zhao^Liu=赵六", "19700101", "M"))
    instances = ct_instances(spec, series=1, per_series=3, rows=32, cols=32, seed=7)
    store = Store(demo.dir / "state" / "state.db")
    try:
        task_id = store.tasks.enqueue(Retrieve(study_uid=spec.study_uid), max_attempts=1,
                                      study_uid=spec.study_uid).id
    finally:
        store.close()
    wait_until(lambda: state_of(demo, task_id) == "dead", 60, 0.3, "the retrieve to go dead")
    return task_id, spec, instances


def state_of(demo: Demo, task_id: int) -> str:
    store = Store(demo.dir / "state" / "state.db")
    try:
        return store.tasks.get(task_id).state
    finally:
        store.close()


def sign_in(b: Browser, name: str, token: str) -> None:
    b.driver.find_element(By.ID, "operator").click()
    b.wait("the sign-in dialog", lambda: b.driver.find_element(By.ID, "signin").is_displayed())
    b.driver.find_element(By.ID, "signin-name").send_keys(name)
    b.driver.find_element(By.ID, "signin-token").send_keys(token)
    b.driver.find_element(By.ID, "signin-ok").click()
    b.wait("signed in", lambda: name in b.driver.find_element(By.ID, "operator").text)


def test_reread_action_quarantines_then_clears_a_corrected_row(demo):
    """`reread_exam` is `sync --once --accession`: it reads a row the poller's window no
    longer covers, quarantines it while wrong, clears it once the PACS corrects it."""
    import datetime as dt
    import sqlite3

    from pydicom.uid import generate_uid

    acc = f"OLD{time.time_ns() % 10**8}"
    old = (dt.datetime.now() - dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    row = dict(demo.exams[0].row, accessionNo=acc, studyInstanceUid=generate_uid(), sex="7",
               examTime=old, auditTime=None, reportTime=None)
    view = sqlite3.connect(demo.dir / "hospital" / "pacs.db")
    try:
        cols = ", ".join(f'"{c}"' for c in row)
        view.execute(f"INSERT INTO pacs_exam_report ({cols}) VALUES "
                     f"({', '.join('?' * len(row))})", tuple(row.values()))
        view.commit()

        def reread() -> requests.Response:
            return requests.post(demo.console_url + "api/actions/reread_exam",
                                 json={"accession_no": acc}, timeout=60, headers={
                                     "X-Console": "1", "X-Operator": "it",
                                     "Authorization": f"Bearer {demo.console_token}"})

        r = reread()
        assert r.status_code == 200 and "1 quarantined" in r.json()["message"], r.text
        problems = requests.get(demo.console_url + "api/problems", timeout=10).json()
        mine = [e for e in problems["quarantined_exams"] if e["accession_no"] == acc]
        assert mine and "sex" in mine[0]["reason"]
        view.execute("UPDATE pacs_exam_report SET sex='1' WHERE accessionNo=?", (acc,))
        view.commit()
        r = reread()
        assert r.status_code == 200 and "1 changed" in r.json()["message"], r.text
    finally:
        view.close()
    store = Store(demo.dir / "state" / "state.db")
    try:
        assert store.exams.get(row["hospitalId"], acc).state != "quarantined"
        assert [e["outcome"] for e in store.audit.list(action="console.reread_exam")][:2] == [
            "ok", "ok"]
    finally:
        store.close()
    r = requests.post(demo.console_url + "api/actions/reread_exam",
                      json={"accession_no": "NO-SUCH-ACC"}, timeout=60, headers={
                          "X-Console": "1", "X-Operator": "it",
                          "Authorization": f"Bearer {demo.console_token}"})
    assert r.status_code == 409 and "no row" in r.json()["message"]


def test_reconciliation_button_runs_the_daemons_pass(demo, browser):
    browser.open(demo.console_url + "#problems")
    sign_in(browser, "赵工", demo.console_token)
    button = browser.wait("the reconciliation button", lambda: browser.css(
        '[data-test="reconcile"]'))
    button[0].click()
    browser.accept_confirm()
    notice = browser.wait("the outcome notice", lambda: browser.css('[data-test="notice"]'))
    assert "完成" in notice[0].text and "checked" in notice[0].text, notice[0].text
    store = Store(demo.dir / "state" / "state.db")
    try:
        entry = store.audit.list(action="console.reconcile")[0]
        assert entry["outcome"] == "ok" and entry["actor"] == "console:赵工@127.0.0.1"
        assert store.facts.get(Fact.REPORTS_RECONCILE) is not None  # what `status` shows
    finally:
        store.close()


def test_suspect_instance_is_listed_in_problems(demo, browser, shots):
    """An instance delivered as received but suspect (short Pixel Data, recorded by the
    Portal AET's ingest) is shown on the Problems page with what to do."""
    sop = "1.2.826.0.1.3680043.8.498.99"
    store = Store(demo.dir / "state" / "state.db")
    try:
        store.dicom_events.record("instance_suspect", "Pixel Data is 100000 of 524288 bytes",
                                  sop_uid=sop, study_uid="1.2.826.0.1.3680043.8.498.98")
    finally:
        store.close()
    browser.open(demo.console_url + "#problems")
    row = browser.wait("the suspect instance row", lambda: browser.css(f'tr[data-sop="{sop}"]'))
    text = row[0].text
    assert "100000 of 524288" in text and "PACS" in text
    browser.screenshot(shots / "problems-suspect.png")
