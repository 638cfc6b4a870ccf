"""`dicomgate status`, `tasks`, `version` and usage errors, as a hospital IT engineer runs them."""

from __future__ import annotations

import json

from tests.support import run_cli
from tests.support.engines import open_store


def test_status_on_a_fresh_state_dir(minimal_config):
    r = run_cli("status", config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert "daemon:      not running" in r.stdout and "no state yet" in r.stdout
    r = run_cli("status", "--json", config=minimal_config)
    data = json.loads(r.stdout)
    assert data["tasks"] == {} and data["dead_tasks"] == [] and data["disk"]["free_bytes"] > 0
    assert data["schema_version"] is None and "dicomgate migrate" in data["no_state"]


def test_tasks_cli_lists_and_retries_dead(minimal_config, tmp_path):

    store = open_store(tmp_path / "state")
    from dicomgate.state.kinds import Retrieve

    tid = store.tasks.enqueue(Retrieve(study_uid="1.2.3")).id
    task = store.tasks.claim(["retrieve"], "me", 60)
    store.tasks.fail(task.id, "me", "PACS refused: unknown AE", retry_in=None)
    r = run_cli("tasks", "list", "--state", "dead", config=minimal_config)
    assert "study:1.2.3" in r.stdout and "unknown AE" in r.stdout
    r = run_cli("tasks", "retry", "--all-dead", config=minimal_config)
    assert r.returncode == 0 and "1 dead task(s)" in r.stdout
    assert store.tasks.get(tid).state == "pending"
    r = run_cli("tasks", "retry", str(tid), config=minimal_config)
    assert r.returncode == 1 and "only dead or cancelled" in r.stderr
    r = run_cli("tasks", "retry", config=minimal_config)
    assert r.returncode == 2
    r = run_cli("tasks", "list", "--json", config=minimal_config)
    assert json.loads(r.stdout)[0]["key"] == "study:1.2.3"


def test_cli_retries_are_audited_with_the_unix_user(minimal_config, tmp_path):
    """The console audits who retried what; the same actions from the shell must too."""
    from dicomgate.state.kinds import Retrieve

    store = open_store(tmp_path / "state")
    tid = store.tasks.enqueue(Retrieve(study_uid="1.2.9")).id
    store.tasks.fail(store.tasks.claim(["retrieve"], "me", 60).id, "me", "refused",
                     retry_in=None)
    env = {"LOGNAME": "hospital-it", "USER": "hospital-it"}
    assert run_cli("tasks", "retry", str(tid), config=minimal_config, env=env).returncode == 0
    r = run_cli("tasks", "retry", str(tid), config=minimal_config, env=env)
    assert r.returncode == 1  # already pending: refused, and audited as refused
    assert run_cli("tasks", "retry", "--all-dead", config=minimal_config,
                   env=env).returncode == 0
    rows = list(reversed(store.audit.list()))
    assert [(a["actor"], a["action"], a["subject"], a["outcome"]) for a in rows] == [
        ("cli:hospital-it", "cli.retry_task", f"task:{tid}", "ok"),
        ("cli:hospital-it", "cli.retry_task", f"task:{tid}", "refused"),
        ("cli:hospital-it", "cli.retry_all_dead", "tasks:dead", "refused"),
    ]
    assert all(a["detail"]["via"] == "cli" and a["at"] > 0 for a in rows)
    assert "only dead or cancelled" in rows[1]["detail"]["message"]


def test_version_and_usage_errors():
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("dicomgate ")
    r = run_cli("no-such-command")
    assert r.returncode == 2 and "Traceback" not in r.stderr
