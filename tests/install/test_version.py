"""What is installed, where an operator and a scraper look: `dicomgate version`, `status`,
`/metrics` (dicomgate_build_info)."""

from __future__ import annotations

import json
import platform
import sqlite3
import tomllib
from pathlib import Path

import pytest

from dicomgate import __version__
from dicomgate.config import load
from dicomgate.metrics import render
from dicomgate.state import SCHEMA_VERSION, Store
from tests.support import run_cli

pytestmark = pytest.mark.sqlite_only  # an older SQLite store, read without a change


def db_path(config: Path) -> Path:
    state_dir = Path(tomllib.loads(config.read_text())["gateway"]["state_dir"])
    return state_dir / "state.db"


def test_version_names_python_platform_and_both_schemas(minimal_config):
    r = run_cli("version", "--json", config=minimal_config)
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["version"] == __version__ and v["python"] == platform.python_version()
    assert v["platform"] == f"linux-{platform.machine()}"
    assert v["schema"] == {"code": SCHEMA_VERSION, "store": None}
    text = run_cli("version", config=minimal_config).stdout
    assert f"schema:   {SCHEMA_VERSION} (this code)" in text and "store:    none yet" in text

    Store(db_path(minimal_config)).close()
    v = json.loads(run_cli("version", "--json", config=minimal_config).stdout)
    assert v["schema"] == {"code": SCHEMA_VERSION, "store": SCHEMA_VERSION}
    assert v["state_db"] == str(db_path(minimal_config))


def test_version_reads_an_older_store_without_touching_it(minimal_config):
    db = db_path(minimal_config)
    Store(db).close()
    c = sqlite3.connect(db)
    with c:
        c.execute("DELETE FROM schema_migrations WHERE version = ?", (SCHEMA_VERSION,))
    (older,) = c.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    files = sorted(p.name for p in db.parent.iterdir())
    r = run_cli("version", config=minimal_config)
    assert r.returncode == 0, r.stderr
    assert f"store:    schema {older} at {db}: run `dicomgate migrate`" in r.stdout
    assert sorted(p.name for p in db.parent.iterdir()) == files  # read-only: no -wal/-shm


def test_version_without_a_readable_config_still_answers(tmp_path):
    r = run_cli("version", config=tmp_path / "missing.toml")
    assert r.returncode == 0, r.stderr
    assert "store:    unknown: config" in r.stdout and "file not found" in r.stdout


def test_status_and_metrics_carry_the_build(minimal_config):
    store = Store(db_path(minimal_config))
    try:
        r = run_cli("status", config=minimal_config)
        assert r.returncode == 0, r.stderr
        first = r.stdout.splitlines()[0]
        assert first == (f"dicomgate {__version__} (Python {platform.python_version()}, "
                         f"linux-{platform.machine()}, schema {SCHEMA_VERSION})")
        data = json.loads(run_cli("status", "--json", config=minimal_config).stdout)
        assert data["build"]["version"] == __version__
        assert data["build"]["schema"] == SCHEMA_VERSION
        metrics = render(store, load(minimal_config)).decode()
        line = next(m for m in metrics.splitlines() if m.startswith("dicomgate_build_info{"))
        assert f'version="{__version__}"' in line and f'schema="{SCHEMA_VERSION}"' in line
        assert f'store_schema="{SCHEMA_VERSION}"' in line
        assert f'python="{platform.python_version()}"' in line and line.endswith(" 1.0")
    finally:
        store.close()
