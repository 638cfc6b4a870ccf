"""PostgreSQL helpers for the view tests: the server runs as user postgres."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)


def psql(pg: dict, sql: str, db: str = "postgres") -> str:
    return _as_postgres(str(PG_BIN / "psql"), "-h", pg["host"], "-p", str(pg["port"]),
                        "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-A",
                        "-t", "-c", sql).stdout
