"""The PostgreSQL engine: the `Database` contract (engine.py), for a store shared by nodes.

The repositories' SQL is written once, in the portable subset both engines share (ON
CONFLICT, RETURNING, CASE); `dialect.py` turns it into PostgreSQL's (placeholders, the
two-argument MAX/MIN, DDL types). What SQLite gives by having one writer, this engine gives
the same way: every write transaction first takes one transaction-scoped advisory lock, so
the repositories' read-then-write steps stay race-free across nodes without a second code
path. Task claims are the exception (tasks.py): one statement with FOR UPDATE SKIP LOCKED,
so nodes claim concurrently and never the same task.

A lost connection is dropped and opened again on the next use: while PostgreSQL is down
every call raises `StoreUnavailable` (naming the URL without its password), the workers
pause (tasks/pause.py), and they resume by themselves when it answers again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import dialect
from .db import StoreUnavailable, secure_dir
from .engine import Database

WRITE_LOCK = 0x64636D67  # "dcmg": the store's single-writer lock (pg_advisory_xact_lock)
CONNECT_TIMEOUT = 5  # seconds: a node notices a dead server quickly, then retries
CHANNEL = "dicomgate_tasks"  # LISTEN/NOTIFY: a task enqueued on one node wakes the others


@dataclass(frozen=True)
class PgLocation:
    """A shared store: PostgreSQL at `url`; `state_dir` is this node's own directory
    (spool, quarantine, the doorbell socket), never shared."""

    url: str = field(repr=False)
    state_dir: Path
    node: str  # this node's name (gateway.node_name)

    def __str__(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL without its password, for logs, health and status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Row(dict):
    """A row read by name like sqlite3.Row, and by position too (`row[0]`)."""

    __slots__ = ("_values",)
    _values: tuple[Any, ...]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return self._values[key]
        return dict.__getitem__(self, key)


def _row_factory(cursor: Any) -> Callable[[Any], Row]:
    names = [d.name for d in (cursor.description or ())]

    def make(values: Any) -> Row:
        r = Row(zip(names, (_plain(v) for v in values), strict=True))
        r._values = tuple(r.values())
        return r

    return make


def _plain(v: Any) -> Any:
    """NUMERIC (SUM of integers, AVG) as int or float, the types SQLite gives."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


class Cursor:
    """What the repositories use of a sqlite3.Cursor: fetchone, fetchall, rowcount,
    lastrowid (an INSERT into a table with an `id` returns it; see dialect.py)."""

    def __init__(self, cur: Any, returning_id: bool):
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid: int | None = None
        self._pending: list[Row] | None = None
        if returning_id:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None

    def fetchone(self) -> Row | None:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Row]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class Connection:
    """One psycopg connection in autocommit mode; `tx()` issues BEGIN/COMMIT itself."""

    def __init__(self, raw: Any, url: str):
        self.raw = raw
        self.url = url
        self.in_transaction = False
        self.thread: threading.Thread | None = None

    def execute(self, sql: str, params: tuple | list | dict = ()) -> Cursor:
        import psycopg

        text, returning_id = dialect.postgres(sql)
        try:
            cur = self.raw.execute(text, params, prepare=False)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # gone mid-call
            raise StoreUnavailable(unavailable(self.url, exc)) from exc
        return Cursor(cur, returning_id)

    def executemany(self, sql: str, seq: Any) -> Cursor:
        import psycopg

        text, _ = dialect.postgres(sql)
        try:
            cur = self.raw.cursor()
            cur.executemany(text, list(seq))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(unavailable(self.url, exc)) from exc
        return Cursor(cur, False)

    def executescript(self, sql: str) -> None:
        for statement in dialect.postgres_ddl(sql):
            self.execute(statement)


def unavailable(url: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PostgreSQL state store {redact(url)} unreachable: {first}"


class PgDatabase(Database[Connection]):
    """The store on PostgreSQL (engine.py has the transaction bookkeeping). `path` is this
    node's own state file path (the doorbell socket and messages live beside it); the store
    itself is at `url`."""

    engine = "postgresql"

    def __init__(self, url: str, state_dir: Path, node: str):
        super().__init__()
        self.url = url
        self.node = node
        self.path = state_dir / "state.db"
        self._closed = threading.Event()
        secure_dir(state_dir)
        self.conn()

    @property
    def where(self) -> str:
        return redact(self.url)

    def conn(self) -> Connection:
        import psycopg

        c: Connection | None = getattr(self._local, "conn", None)
        if c is not None and not c.raw.closed and not c.raw.broken:
            return c
        if c is not None:
            self._forget(c)
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                  application_name="dicomgate")
        except psycopg.Error as exc:
            raise StoreUnavailable(unavailable(self.url, exc)) from None
        raw.row_factory = _row_factory  # type: ignore[assignment]  # rows as pg.Row
        c = Connection(raw, self.url)
        c.thread = threading.current_thread()
        self._local.conn = c
        with self._lock:
            # Threads come and go (per association, per request): a connection whose thread
            # ended is closed here, so the server's max_connections is never leaked away.
            for old in [o for o in self._all if o.thread and not o.thread.is_alive()]:
                self._all.remove(old)
                self._close(old)
            self._all.append(c)
        return c

    def announce(self, c: Connection, topic: str) -> None:
        c.execute("SELECT pg_notify(?, ?)", (CHANNEL, topic))

    def listen(self, on_announce: Callable[[], None]) -> bool:
        threading.Thread(target=self._listen, args=(on_announce,), name="store-listen",
                         daemon=True).start()
        return True

    def _listen(self, on_announce: Callable[[], None]) -> None:
        """One connection of its own in LISTEN; while the server is away, retry each few
        seconds (the workers' own poll carries on meanwhile) and look once on reconnect."""
        import psycopg

        while not self._closed.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                     application_name="dicomgate-listen") as raw:
                    raw.execute(f"LISTEN {CHANNEL}")
                    on_announce()  # whatever was announced while no one listened
                    while not self._closed.is_set():
                        for _ in raw.notifies(timeout=1.0):
                            on_announce()
            except psycopg.Error:
                self._closed.wait(CONNECT_TIMEOUT)

    def close(self) -> None:
        self._closed.set()
        super().close()

    def _forget(self, c: Connection) -> None:
        with self._lock:
            if c in self._all:
                self._all.remove(c)
        self._close(c)
        self._local.conn = None
        self._local.depth = 0

    def _begin(self, c: Connection) -> None:
        """BEGIN, then the store's write lock: one writer at a time across nodes."""
        c.execute("BEGIN")
        c.in_transaction = True
        try:
            c.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        except BaseException:
            self._rollback(c)
            raise

    def _commit(self, c: Connection) -> None:
        c.execute("COMMIT")
        c.in_transaction = False

    @contextmanager
    def claim_tx(self) -> Iterator[Connection]:
        """A transaction without the write lock, for the claim's single statement (row
        locks and SKIP LOCKED keep concurrent claims apart)."""
        c = self.conn()
        c.execute("BEGIN")
        c.in_transaction = True
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            self._rollback(c)
            raise
        finally:
            c.in_transaction = False

    def _rollback(self, c: Connection) -> None:
        c.in_transaction = False
        try:
            c.raw.execute("ROLLBACK")
        except Exception:  # the connection is gone: the server rolled it back
            self._forget(c)

    def _close(self, c: Connection) -> None:
        try:
            c.raw.close()
        except Exception:
            pass

    def problem(self) -> str | None:
        try:
            self.one("SELECT 1")
        except Exception as exc:
            return str(exc) if isinstance(exc, StoreUnavailable) else (
                f"state database {self.where} unusable: {exc}")
        return None

    def run_script(self, conn: Connection, sql: str) -> None:
        conn.executescript(sql)

    def has_table(self, name: str) -> bool:
        return self.one("SELECT 1 FROM information_schema.tables WHERE table_name = ? "
                        "AND table_schema = current_schema()", (name,)) is not None
