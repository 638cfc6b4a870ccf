"""SQLite connection handling: WAL mode, one connection per thread, migrations.

This package is the only place with SQL. Every write runs in `Database.tx()`
(BEGIN IMMEDIATE), so a crash leaves either the whole step or none of it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .migrations import all_migrations


class StateError(Exception):
    """The state store cannot be opened or used; the message says what to fix."""


def _secure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except PermissionError:
        raise StateError(f"state directory {path} belongs to another user: run as the "
                         "service user (sudo -u dicomgate ...)") from None


class Database:
    def __init__(self, path: Path, busy_timeout: float = 30.0):
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        _secure_dir(path.parent)
        old_umask = os.umask(0o077)  # the -wal and -shm files are created 0600 too
        try:
            self._migrate()
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{path}{suffix}")
            if p.exists():
                os.chmod(p, 0o600)

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            try:
                c = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                    isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StateError(f"cannot open state database {self.path}: {exc}") from None
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA foreign_keys=ON")
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once so writers queue instead of deadlocking."""
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        self._local.after = []
        try:
            yield c
        except BaseException:
            self._local.after = None
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        callbacks, self._local.after = self._local.after, None
        for fn in callbacks:
            fn()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the current transaction commits (now, outside one): others only
        see a row after the commit, so that is when to tell them."""
        pending = getattr(self._local, "after", None)
        if pending is None:
            fn()
        else:
            pending.append(fn)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn().execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.conn().execute(sql, params).fetchone()

    def problem(self) -> str | None:
        """None when the database answers a query, else why not (for the health check)."""
        try:
            self.one("SELECT 1")
        except Exception as exc:
            return f"state database unusable: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        """Apply every migration not yet recorded; versions need not be contiguous."""
        c = self.conn()
        c.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                  "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
        done = {r[0] for r in c.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in all_migrations():
            if version in done:
                continue
            c.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split(sql):
                    c.execute(statement)
                c.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                          (version, name, time.time()))
            except sqlite3.Error as exc:
                c.execute("ROLLBACK")
                raise StateError(f"migration {version} ({name}) failed: {exc}") from None
            c.execute("COMMIT")

    def schema_version(self) -> int:
        row = self.one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0)


def _split(sql: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner `;`)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
