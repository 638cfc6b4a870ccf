"""Fixtures for the state store's tests: each runs on both engines, SQLite (one host)
and PostgreSQL (nodes sharing a store; a throwaway server started for the session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicomgate.state import PgLocation, Store
from tests.support import engines
from tests.support.pg_server import PgServer


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    return engines.pg_server()  # the one the suite's other tests use on PostgreSQL


@pytest.fixture(params=engines.ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def store_where(engine, tmp_path, request):
    """Where a new store goes: a SQLite file, or a fresh database on the session's server."""
    if engine == "sqlite":
        return tmp_path / "state" / "state.db"
    server = request.getfixturevalue("pg_server")
    return PgLocation(server.new_database(), tmp_path / "state", node="gw-test")


@pytest.fixture
def store(store_where) -> Iterator[Store]:
    s = Store(store_where)
    yield s
    s.close()
