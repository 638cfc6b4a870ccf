"""The CLI on a shared PostgreSQL store: `migrate` creates it (no file backup: the
hospital's pg_dump is), `status` says where it is without the password and lists nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dicomgate.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=60)


def test_migrate_then_status_on_a_postgresql_store(pg, tmp_path, monkeypatch):
    url = pg.new_database().replace("postgres@", "postgres:pw@")  # trust auth ignores it
    config = tmp_path / "dicomgate.toml"
    config.write_text(f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp_path / 'state'}"
node_name = "gw-a"
[dicom]
ae_title = "DGATE_A"
bind = "127.0.0.1"
port = 1
[state]
url_env = "DG_TEST_STATE_URL"
""", encoding="utf-8")
    monkeypatch.setenv("DG_TEST_STATE_URL", url)
    before = _cli(config, "status")
    assert before.returncode == 0 and "no state yet in postgresql://postgres:***@" in (
        before.stdout), before.stdout + before.stderr
    m = _cli(config, "migrate")
    assert m.returncode == 0, m.stderr
    assert "backup: none taken (PostgreSQL" in m.stdout
    s = _cli(config, "status", "--json")
    assert s.returncode == 0, s.stderr
    data = json.loads(s.stdout)
    assert data["store"] == {"engine": "postgresql",
                             "where": url.replace(":pw@", ":***@")}
    assert data["nodes"] == []  # no node has beaten yet
    assert "pw@" not in s.stdout + _cli(config, "status").stdout
    assert not (tmp_path / "state" / "state.db").exists()  # nothing went to SQLite
