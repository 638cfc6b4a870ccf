"""Which engine the state store of a test runs on: the one place that decides it.

SQLite (one host, a file under gateway.state_dir) unless DICOMGATE_TEST_ENGINE=postgresql:
then every store a test makes, and every configuration it writes through these helpers,
uses a database of its own on a throwaway PostgreSQL server (one per test process, started
on first use; a subprocess of the test reuses it through DICOMGATE_TEST_PG_URL).

A store and the configuration a daemon reads meet by the test's state directory: the
database's name is derived from it, so `open_store(state_dir)` in the test and `[state]
url` in the daemon's configuration name the same database.

A test about SQLite itself (its file, its backups, its file system) is marked
`@pytest.mark.sqlite_only`: it runs on SQLite whatever the choice (the root conftest)."""

from __future__ import annotations

import atexit
import hashlib
import os
import socket
from pathlib import Path

import structlog.testing

from dicomgate.app import App
from dicomgate.config.model import Config
from dicomgate.state import PgLocation, Store
from tests.support.pg_server import PgServer

ENGINES = ("sqlite", "postgresql")
CHOSEN = os.environ.get("DICOMGATE_TEST_ENGINE", "sqlite")
if CHOSEN not in ENGINES:
    raise SystemExit(f"DICOMGATE_TEST_ENGINE={CHOSEN!r}: expected one of {', '.join(ENGINES)}")

_active = {"engine": CHOSEN}
_server: dict[str, PgServer] = {}
_created: set[str] = set()


def engine() -> str:
    """The engine of the test running now."""
    return _active["engine"]


def use(name: str) -> None:
    """Set by the root conftest before each test (the choice, or sqlite for sqlite_only)."""
    _active["engine"] = name


def pg_server() -> PgServer:
    """This process's throwaway PostgreSQL server, started on first use, stopped at exit."""
    if "server" not in _server:
        server = PgServer()
        atexit.register(server.close)
        _server["server"] = server
        os.environ["DICOMGATE_TEST_PG_URL"] = server.url()
    return _server["server"]


def pg_url(db: str = "postgres") -> str:
    """The URL of `db` on the test's server (a subprocess of a test reuses its parent's)."""
    base = os.environ.get("DICOMGATE_TEST_PG_URL") or pg_server().url()
    return base.rsplit("/", 1)[0] + "/" + db


def database_for(state_dir: Path) -> str:
    """The URL of the database that belongs to `state_dir` (created empty on first use)."""
    name = "t_" + hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:20]
    url = pg_url(name)
    if url not in _created:
        import psycopg

        with psycopg.connect(pg_url(), autocommit=True) as c:
            try:
                c.execute(f"CREATE DATABASE {name}")
            except psycopg.errors.DuplicateDatabase:
                pass  # made by an earlier process of this test (a daemon, a CLI call)
        _created.add(url)
    return url


def state_toml(state_dir: Path) -> str:
    """The `[state]` section of a test's configuration: empty on SQLite (the default)."""
    if engine() == "sqlite":
        return ""
    return f'\n[state]\nurl = "{database_for(state_dir)}"\n'


def store_location(state_dir: Path) -> Path | PgLocation:
    """What `Store(...)` takes for the store of `state_dir`, as the daemon would open it."""
    if engine() == "sqlite":
        return Path(state_dir) / "state.db"
    return PgLocation(database_for(state_dir), Path(state_dir), socket.gethostname())


def open_store(where: Path | Config) -> Store:
    """The store of a state directory (created and migrated when new) on the test's engine,
    or the one a loaded configuration names (its [state], as the daemon reads it)."""
    if isinstance(where, Config):
        return Store(where.store_location)
    return Store(store_location(where))


def read(state_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` (`?` placeholders) read from the store of `state_dir` with the engine's
    own driver, not through a Store: what a daemon in another process wrote, seen as is."""
    if engine() == "sqlite":
        import sqlite3

        with sqlite3.connect(Path(state_dir) / "state.db", timeout=5) as c:
            return c.execute(sql, params).fetchall()
    import psycopg

    with psycopg.connect(database_for(state_dir), connect_timeout=5) as c:
        return c.execute(sql.replace("?", "%s"), params).fetchall()


def schema_version(state_dir: Path) -> int | None:
    """The newest migration the store of `state_dir` records (`read`); None when there is
    none yet or it cannot be read now."""
    import sqlite3

    import psycopg

    if engine() == "sqlite" and not (Path(state_dir) / "state.db").exists():
        return None
    try:
        return read(state_dir, "SELECT MAX(version) FROM schema_migrations")[0][0]
    except (sqlite3.Error, psycopg.Error):
        return None


def built_app(config: Config, store: Store | None = None) -> App:
    """`App.build` for a test that runs jobs itself (`scheduler.run_now`) without starting
    the services. On PostgreSQL, one node beat first, as the node service does when it
    starts: only the leader runs the scheduled jobs, and a node that never beat leads
    nothing (the job would be skipped, as on a second node)."""
    app = App.build(config, store if store is not None else open_store(config))
    if app.node is not None:
        with structlog.testing.capture_logs():  # its node.leading line is not the test's output
            app.node.beat()
        assert app.node.leading, app.node.problem or "another node leads this store"
    return app


def discard_store(state_dir: Path) -> None:
    """Throw the store of `state_dir` away (no process may have it open): the next one
    made there starts empty, as on a new host."""
    if engine() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            (Path(state_dir) / f"state.db{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    url = database_for(state_dir)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url(), autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
