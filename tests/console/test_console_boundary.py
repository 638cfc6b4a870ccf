"""The console behind the front's Host/Origin allow-list (DNS rebinding), and inputs that
used to end in a 500: a long static name, a task number past 64 bits."""

from __future__ import annotations

import http.client
import json

import pytest
from console_fixtures import TOKEN, dead_task, start, stop

from dicomgate.state.names import TaskState


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    d = start(tmp_path_factory.mktemp("console-local"),
              f'[console]\nlocal_actions = true\noperator_token = "{TOKEN}"\n')
    yield d
    stop(d.proc)


def call(d, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
    port = int(d.base.rsplit(":", 1)[1])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_read_api_refuses_a_foreign_host(local):
    port = local.base.rsplit(":", 1)[1]
    status, body = call(local, "GET", "/console/api/exams", {"Host": f"evil.example:{port}"})
    assert status == 403 and b"Host" in body, body[:200]
    status, _ = call(local, "GET", "/console/api/exams", {"Host": f"127.0.0.1:{port}"})
    assert status == 200


def test_local_action_with_rebound_host_and_origin_refused(local):
    store = local.store()
    dead_task(store, "1.2.826.0.1.99.1", "boom")
    store.close()
    port = local.base.rsplit(":", 1)[1]
    evil = f"evil.example:{port}"
    status, body = call(local, "POST", "/console/api/actions/retry_all_dead",
                        {"Host": evil, "Origin": f"http://{evil}", "X-Console": "1",
                         "X-Operator": "x", "Content-Type": "application/json"}, b"{}")
    assert status == 403, body[:200]
    store = local.store()
    try:
        assert store.tasks.list(state=TaskState.DEAD, limit=10), "the dead task was retried"
    finally:
        store.close()
    # the console's own page (same host, http) still acts
    status, body = call(local, "POST", "/console/api/actions/retry_all_dead",
                        {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}",
                         "X-Console": "1", "X-Operator": "x",
                         "Content-Type": "application/json"}, b"{}")
    assert status == 200 and json.loads(body)["ok"], body


def test_long_static_name_is_404(local):
    r = local.get("/console/static/" + "a" * 5000 + ".js")
    assert r.status_code == 404 and "error" in r.json()


@pytest.mark.parametrize("task_id", ["9" * 20, 2**63, "0"])
def test_task_number_out_of_range_named(local, task_id):
    r = local.act("retry_task", {"task_id": task_id})
    assert r.status_code in (400, 409), r.text
    assert "task_id" in r.json().get("message", r.json().get("error", "")), r.text
    assert "internal error" not in r.text
