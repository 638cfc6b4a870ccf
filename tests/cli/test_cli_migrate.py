"""`dicomgate migrate` and the schema guard every other command applies: an upgrade typed
next to a running daemon must never change the schema under it."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from dicomgate.daemon_lock import DaemonLock
from dicomgate.state import SCHEMA_VERSION, Store
from dicomgate.state.db import SqliteDatabase
from dicomgate.state.schema import KNOWN, split_statements
from tests.support import run_cli

# the SQLite file, its backups and permissions (PostgreSQL: tests/ha/test_cli_postgresql.py)
pytestmark = pytest.mark.sqlite_only

STATE = "state"


def old_store(state_dir: Path) -> int:
    """A store written by the previous release: every migration but the newest, one task."""
    db = SqliteDatabase(state_dir / "state.db")
    c = db.conn()
    c.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
              "name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for version, name, sql in KNOWN[:-1]:
        for statement in split_statements(sql):
            c.execute(statement)
        c.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
    c.execute("INSERT INTO tasks (kind, key, payload, run_after, created_at, updated_at) "
              "VALUES ('retrieve', 'study:1.2.3', '{\"study_uid\": \"1.2.3\"}', 0, 0, 0)")
    db.close()
    return KNOWN[-2][0]


def versions(db_path: Path) -> set[int]:
    with sqlite3.connect(db_path) as c:
        return {r[0] for r in c.execute("SELECT version FROM schema_migrations")}


def test_commands_refuse_an_older_schema_and_leave_it_alone(minimal_config, tmp_path):
    state = tmp_path / STATE
    old = old_store(state)
    before = versions(state / "state.db")
    for args in (["status"], ["tasks", "list"]):
        r = run_cli(*args, config=minimal_config)
        assert r.returncode == 4, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "run `dicomgate migrate`" in r.stderr
        assert f"schema {old}" in r.stderr and "Traceback" not in r.stderr
    assert versions(state / "state.db") == before  # nothing migrated behind the daemon


def test_migrate_refuses_while_the_daemon_holds_the_lock(minimal_config, tmp_path):
    state = tmp_path / STATE
    old_store(state)
    lock = DaemonLock(state)
    assert lock.acquire()
    try:
        r = run_cli("migrate", config=minimal_config)
    finally:
        lock.release()
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "daemon.lock" in r.stderr and "pid" in r.stderr
    assert SCHEMA_VERSION not in versions(state / "state.db")


def test_migrate_backs_up_then_upgrades(minimal_config, tmp_path):
    state = tmp_path / STATE
    old = old_store(state)
    r = run_cli("migrate", config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert f"schema {old} -> {SCHEMA_VERSION}" in r.stdout
    backups = list((state / "backups").iterdir())
    assert len(backups) == 1 and f"backup: {backups[0]}" in r.stdout
    name = backups[0].name
    assert name.startswith(f"state-schema{old}-") and name.endswith("Z.sqlite3")
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "backups").stat().st_mode) == 0o700
    assert max(versions(backups[0])) == old  # the copy is the store as it was
    with sqlite3.connect(backups[0]) as c:
        assert c.execute("SELECT key FROM tasks").fetchall() == [("study:1.2.3",)]
    store = Store.open(state / "state.db")
    assert store.schema_version() == SCHEMA_VERSION
    assert [t.key for t in store.tasks.list()] == ["study:1.2.3"]
    store.close()
    r = run_cli("migrate", "--json", config=minimal_config)
    assert r.returncode == 0 and json.loads(r.stdout) == {
        "schema_from": SCHEMA_VERSION, "schema_to": SCHEMA_VERSION, "applied": [],
        "backup": None}
    r = run_cli("migrate", config=minimal_config)
    assert r.stdout.strip() == f"schema {SCHEMA_VERSION}, nothing to do"
    assert run_cli("status", config=minimal_config).returncode == 0


def test_migrate_a_new_state_dir_says_there_was_nothing_to_back_up(minimal_config, tmp_path):
    r = run_cli("migrate", "--backup-dir", str(tmp_path / "copies"), config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert "backup: none (the store was new and empty)" in r.stdout
    assert not (tmp_path / "copies").exists()
    assert max(versions(tmp_path / STATE / "state.db")) == SCHEMA_VERSION


def test_a_newer_schema_is_refused_by_every_command_and_the_daemon(minimal_config, tmp_path):
    store = Store(tmp_path / STATE / "state.db")
    store.db.conn().execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)")
    store.close()
    for args in (["status"], ["migrate"], ["run"]):
        r = run_cli(*args, config=minimal_config, timeout=30)
        assert r.returncode != 0, args
        out = r.stdout + r.stderr
        assert "written by a newer dicomgate (schema 9999" in out, (args, out)
        assert "install that version or restore a backup" in out and "Traceback" not in out
    assert run_cli("status", config=minimal_config).returncode == 4


def test_reading_commands_on_a_new_state_dir_create_nothing(minimal_config, tmp_path):
    r = run_cli("tasks", "list", config=minimal_config)
    assert r.returncode == 5 and "no state yet" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("status", "--json", config=minimal_config)
    assert r.returncode == 0 and json.loads(r.stdout)["schema_version"] is None
    assert not (tmp_path / STATE / "state.db").exists()
    # a command that acts creates the store: there is nothing to upgrade or back up
    r = run_cli("tasks", "retry", "--all-dead", config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert max(versions(tmp_path / STATE / "state.db")) == SCHEMA_VERSION
    assert not (tmp_path / STATE / "backups").exists()
