"""Fixtures for the reports tests: a SQLite PACS behind unixODBC, its gateway config,
and the CLI run in-process."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reports_mariadb import mariadb_server
from reports_pg import PG_BIN, _as_postgres
from reports_support import Pacs, reports_config, view_reports

from dicomgate.cli import main
from dicomgate.sandbox.orthanc import free_port


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    def run(config: Path, *argv: str) -> tuple[int, str, str]:
        code = main(["--config", str(config), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def sqlite_pacs(tmp_path: Path) -> Pacs:
    return Pacs(tmp_path / "pacs.db")


@pytest.fixture
def sqlite_config(tmp_path: Path, sqlite_pacs: Pacs) -> Path:
    return reports_config(tmp_path, view_reports(f"Driver=SQLite3;Database={sqlite_pacs.path}"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict]:
    """A throw-away PostgreSQL 15 cluster on a free loopback port, run as user postgres."""
    # not under pytest's tmp dir: that one is private to root and postgres cannot enter it
    base = Path(tempfile.mkdtemp(prefix="dicomgate-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(base, 0o755)
    port = free_port()
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--locale=C.UTF-8")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "-l",
                 str(base / "pg.log"), "-o",
                 f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c timezone=Asia/Shanghai", "start")
    try:
        yield {"port": port, "host": "127.0.0.1", "sock": str(sock)}
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                     "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[dict]:
    """A throw-away MariaDB server on a free loopback port, its own zone UTC."""
    with mariadb_server() as server:
        yield server
