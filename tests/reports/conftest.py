"""Fixtures for the reports tests: a SQLite PACS behind unixODBC, its gateway config,
and the CLI run in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from reports_support import Pacs, view_reports, write_config

from dicomgate.cli import main


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
    return write_config(tmp_path, view_reports(f"Driver=SQLite3;Database={sqlite_pacs.path}"))
