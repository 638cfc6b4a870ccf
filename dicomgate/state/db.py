"""SQLite connection handling: WAL mode, one connection per thread (migrations: schema.py).

This package is the only place with SQL. Every write runs in `Database.tx()`
(BEGIN IMMEDIATE), so a crash leaves either the whole step or none of it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path

from .engine import Database

_UNWRITABLE = ("disk is full", "database or disk is full", "disk i/o error",
               "database is locked", "unable to open database")


def disk_full(exc: BaseException | None) -> bool:
    """ENOSPC / EDQUOT, or SQLite's "database or disk is full", anywhere in the chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and "full" in str(exc).lower():
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def store_unwritable(exc: BaseException) -> bool:
    """The store, not the work, failed (full, locked, unreadable, PostgreSQL unreachable):
    the engine's errors are classified here so nothing outside state/ knows them."""
    if isinstance(exc, StoreUnavailable):
        return True
    return disk_full(exc) or (isinstance(exc, sqlite3.OperationalError) and any(
        w in str(exc).lower() for w in _UNWRITABLE))


class StateError(Exception):
    """The state store cannot be opened or used; the message says what to fix."""


class StoreUnavailable(StateError):
    """PostgreSQL does not answer (down, failing over, refusing us): work pauses."""


def secure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except PermissionError:
        raise StateError(f"state directory {path} belongs to another user: run as the "
                         "service user (sudo -u dicomgate ...)") from None


class SqliteDatabase(Database[sqlite3.Connection]):
    """The store in one SQLite file (WAL): one host, one writer at a time."""

    engine = "sqlite"

    def __init__(self, path: Path, busy_timeout: float = 30.0):
        super().__init__()
        self.path = path
        self.busy_timeout = busy_timeout
        secure_dir(path.parent)
        old_umask = os.umask(0o077)  # the -wal and -shm files are created 0600 too
        try:
            self.conn()
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(f"{path}{suffix}", 0o600)
            except FileNotFoundError:  # none yet, or another process's last close removed it
                pass

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            try:
                c = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                    isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StateError(f"cannot open state database {self.path}: {exc}") from None
            c.row_factory = sqlite3.Row
            self._wal(c)
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA foreign_keys=ON")
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def _wal(self, c: sqlite3.Connection) -> None:
        """Switching a new file to WAL takes an exclusive lock for which SQLite does not
        wait (no busy handler): two processes creating the store at once (the daemon
        starting, a command) would see "database is locked". Wait for it, bounded."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                c.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _begin(self, c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")

    def _commit(self, c: sqlite3.Connection) -> None:
        c.execute("COMMIT")

    def _rollback(self, c: sqlite3.Connection) -> None:
        if c.in_transaction:
            c.execute("ROLLBACK")

    def _close(self, c: sqlite3.Connection) -> None:
        try:
            c.close()
        except sqlite3.Error:
            pass

    @property
    def where(self) -> str:
        """Where the store is, for messages (the PostgreSQL engine: its URL, no password)."""
        return str(self.path)

    def has_table(self, name: str) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)) is not None

    def run_script(self, conn: sqlite3.Connection, sql: str) -> None:
        """A migration script's statements, inside the caller's transaction."""
        from .schema import split_statements

        for statement in split_statements(sql):
            conn.execute(statement)

    def problem(self) -> str | None:
        """None when the database answers a query, else why not (for the health check)."""
        try:
            self.one("SELECT 1")
        except Exception as exc:
            return f"state database unusable: {exc}"
        return None
