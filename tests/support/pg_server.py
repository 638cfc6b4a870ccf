"""A throwaway PostgreSQL 15 server for the tests: initdb into a temp dir, a free loopback
port, trust auth; stopped (or restarted, to test an outage) by the test that owns it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)


class PgServer:
    def __init__(self) -> None:
        # Not under pytest's tmp dir: the postgres user must reach it (pytest's is 0700).
        base = Path(tempfile.mkdtemp(prefix="dicomgate-pg-"))
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.port = _free_port()
        base.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for p in (base, self.sock):
                shutil.chown(p, "postgres")
            os.chmod(base, 0o755)
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self.start()

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-l",
                     str(self.base / "pg.log"), "-o",
                     f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                     "-c fsync=off -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh empty database on this server; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped by the test
        shutil.rmtree(self.base, ignore_errors=True)
