"""PostgreSQL helpers for the view tests: the server runs as user postgres."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from reports_pacs import TABLES, VIEW

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)


def psql(pg: dict, sql: str, db: str = "postgres") -> str:
    return _as_postgres(str(PG_BIN / "psql"), "-h", pg["host"], "-p", str(pg["port"]),
                        "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-A",
                        "-t", "-c", sql).stdout


CHAOS = """
CREATE TABLE chaos (accession TEXT);
CREATE FUNCTION chaos_gate(acc TEXT) RETURNS TEXT AS $$
DECLARE
    hits INTEGER;
BEGIN
    IF EXISTS (SELECT 1 FROM chaos WHERE accession = acc) THEN
        -- the gateway reads the marked row three times before the window itself (the
        -- text check, the time format probe and the duplicate count evaluate every row
        -- of the view): the fourth time, in the window read, the connection drops
        hits := coalesce(nullif(current_setting('chaos.hits', true), ''), '0')::int + 1;
        PERFORM set_config('chaos.hits', hits::text, false);
        IF hits >= 4 THEN
            PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
    END IF;
    RETURN acc;
END $$ LANGUAGE plpgsql VOLATILE;
"""


def sql_literal(value) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


class PgPacs:
    def __init__(self, pg: dict, ts: str = "TIMESTAMP", zone: str | None = None):
        self.pg = pg
        self.db = "pacs_" + uuid.uuid4().hex[:8]
        psql(pg, f"CREATE DATABASE {self.db} ENCODING 'UTF8' TEMPLATE template0")
        if zone:  # the server's zone for this database's sessions (the cluster's otherwise)
            psql(pg, f"ALTER DATABASE {self.db} SET timezone TO '{zone}'")
        self.run(TABLES.format(ts=ts) + CHAOS + VIEW.format(acc="chaos_gate(e.EXAM_NO)"))

    def run(self, sql: str) -> str:
        return psql(self.pg, sql, self.db)

    def insert(self, template: str, values: tuple) -> None:
        parts = template.split("?")
        self.run("".join(p + (sql_literal(v) if i < len(values) else "")
                         for i, (p, v) in enumerate(zip(parts, [*values, None], strict=True))))

    def connection(self, **extra: str) -> str:
        opts = "".join(f"{k}={v};" for k, v in extra.items())
        return (f"Driver={{PostgreSQL Unicode}};Server={self.pg['host']};Port={self.pg['port']};"
                f"Database={self.db};Uid=postgres;Pwd=;{opts}")
