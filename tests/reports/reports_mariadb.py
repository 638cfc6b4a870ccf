"""A throw-away MariaDB server for the view tests (Debian mariadb-server, MariaDB
Connector/ODBC "MariaDB Unicode"), and a PACS database in it.

The server runs from a temp datadir on a free loopback port; as root it runs as user
mysql (mariadbd drops privileges itself). Its own zone is UTC, unlike the gateway's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reports_pacs import VIEW

from dicomgate.sandbox.orthanc import free_port

MARIADBD = "/usr/sbin/mariadbd"

# The PACS tables in MySQL types: {ts} is the time columns' type, {text} the long texts'.
TABLES = """
CREATE TABLE RIS_EXAM (
    EXAM_NO VARCHAR(64), HOSP_CODE VARCHAR(32), STUDY_UID VARCHAR(64), PAT_ID VARCHAR(64),
    PAT_NAME VARCHAR(64), ID_NO VARCHAR(32), PAT_SEX VARCHAR(8), PAT_AGE VARCHAR(16),
    PAT_TYPE VARCHAR(8), FEE_TYPE VARCHAR(8), MODALITY VARCHAR(16), EXAM_CLASS VARCHAR(8),
    BODY_PART VARCHAR(32), ITEM_NAME VARCHAR(128), EXAM_DATE {ts}, IMAGE_URL VARCHAR(512)
);
CREATE TABLE RIS_REPORT (
    EXAM_NO VARCHAR(64), FINDINGS {text}, IMPRESSION {text}, RESULT_CODE VARCHAR(8),
    REPORTER VARCHAR(32), AUDITOR VARCHAR(32), REPORT_DATE {ts}, AUDIT_DATE {ts},
    MODIFY_DATE {ts}
);
CREATE TABLE RIS_FEE (EXAM_NO VARCHAR(64), REFUND_DATE {ts});
"""


@contextmanager
def mariadb_server() -> Iterator[dict]:
    base = Path(tempfile.mkdtemp(prefix="dicomgate-maria-"))
    data, sock, tmp = base / "data", base / "mysqld.sock", base / "tmp"
    # A temp dir of its own: bootstraps sharing /tmp (two test workers at once) collide on
    # their temporary tables ("Unknown table 'mysql.tmp_proxies_priv'"), 1 in 6 here.
    tmp.mkdir()
    user = "mysql" if os.geteuid() == 0 else os.environ.get("USER", "")
    if os.geteuid() == 0:
        shutil.chown(base, "mysql")
        shutil.chown(tmp, "mysql")
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                           f"--user={user}", "--auth-root-authentication-method=normal",
                           "--skip-test-db", f"--tmpdir={tmp}"], capture_output=True,
                          text=True, timeout=120, cwd=base)
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed (exit {init.returncode}):\n"
                           + (init.stdout + init.stderr)[-2000:])
    port = free_port()
    log = open(base / "mariadbd.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [MARIADBD, "--no-defaults", f"--datadir={data}", f"--user={user}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={sock}", f"--pid-file={base / 'pid'}",
         f"--tmpdir={tmp}",
         "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--default-time-zone=+00:00",
         "--character-set-server=utf8mb4", "--skip-name-resolve"],
        stdout=log, stderr=subprocess.STDOUT)
    server = {"host": "127.0.0.1", "port": port, "sock": str(sock), "base": base}
    try:
        for _ in range(300):  # bounded: 30 s
            if proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {(base / 'mariadbd.log').read_text()}")
            if sock.exists() and _client(server, "SELECT 1", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("mariadbd did not start in 30 s")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _client(server: dict, sql: str, db: str = "", check: bool = True,
            charset: str = "utf8mb4") -> subprocess.CompletedProcess:
    cmd = ["mariadb", "--no-defaults", "-uroot", f"--socket={server['sock']}",
           f"--default-character-set={charset}", "-N", "-B", *([db] if db else []),
           "-e", sql]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def literal(value) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


class MariaPacs:
    """A PACS database in the MariaDB server, written with the mariadb client (not ODBC),
    read by the gateway over MariaDB Connector/ODBC."""

    def __init__(self, server: dict, charset: str = "utf8mb4", ts: str = "DATETIME",
                 text: str = "MEDIUMTEXT"):
        self.server, self.charset = server, charset
        self.db = "pacs_" + uuid.uuid4().hex[:8]
        collation = {"utf8mb4": "utf8mb4_unicode_ci", "gbk": "gbk_chinese_ci"}[charset]
        _client(server, f"CREATE DATABASE {self.db} CHARACTER SET {charset} "
                        f"COLLATE {collation}")
        self.run(TABLES.format(ts=ts, text=text) + VIEW.format(acc="e.EXAM_NO") + ";")
        # the gateway's read-only account
        self.user = "ro_" + self.db[-8:]
        _client(server, f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY 'ro-pass'; "
                        f"GRANT SELECT, SHOW VIEW ON {self.db}.* TO '{self.user}'@'127.0.0.1'")

    def run(self, sql: str) -> str:
        return _client(self.server, sql, self.db).stdout

    def insert(self, template: str, values: tuple) -> None:
        parts = template.split("?")
        self.run("".join(p + (literal(v) if i < len(values) else "")
                         for i, (p, v) in enumerate(zip(parts, [*values, None], strict=True))))

    def connection(self, **extra: str) -> str:
        opts = "".join(f"{k}={v};" for k, v in extra.items())
        return (f"Driver={{MariaDB Unicode}};Server={self.server['host']};"
                f"Port={self.server['port']};Database={self.db};Uid={self.user};"
                f"Pwd=ro-pass;{opts}")
