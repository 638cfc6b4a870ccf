"""What both database engines share (SQLite in db.py, PostgreSQL in pg.py): a connection per
thread, the write transaction that joins the one already open on the thread, the callbacks
run once it commits, and the read helpers. An engine says how to open a connection and how
to begin, commit and roll back; the bookkeeping is written once, here.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar


class _Connection(Protocol):
    def execute(self, sql: str, params: Any = (), /) -> Any: ...


C = TypeVar("C", bound=_Connection)


class Database(ABC, Generic[C]):
    """The contract the repositories use (annotated `db: Database`). Rows are read by name and by
    position (`row["n"]`, `row[0]`): sqlite3.Row on SQLite, pg.Row on PostgreSQL."""

    engine: str
    node: str | None = None  # nodes sharing a store: this one's name; None: one host
    path: Path  # this node's own state file path: the doorbell socket lives beside it

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[C] = []
        self._lock = threading.Lock()

    # -- what an engine provides -----------------------------------------------------------
    @abstractmethod
    def conn(self) -> C:
        """This thread's connection, opened on first use."""

    @abstractmethod
    def _begin(self, c: C) -> None:
        """Open a write transaction (a single writer at a time, across processes/nodes)."""

    @abstractmethod
    def _commit(self, c: C) -> None: ...

    @abstractmethod
    def _rollback(self, c: C) -> None:
        """Undo the open transaction, if any; never raises for a connection already gone."""

    @abstractmethod
    def _close(self, c: C) -> None: ...

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the store is, for messages (never a password)."""

    @abstractmethod
    def has_table(self, name: str) -> bool: ...

    @abstractmethod
    def run_script(self, conn: C, sql: str) -> None:
        """A migration script's statements, inside the caller's transaction."""

    @abstractmethod
    def problem(self) -> str | None:
        """None when the database answers a query, else why not (for the health check)."""

    def announce(self, c: C, topic: str) -> None:
        """Tell the other nodes sharing this store, once the open transaction commits, that
        work of `topic` is due (one host: nothing to tell; the doorbell wakes this one)."""

    def listen(self, on_announce: Callable[[], None]) -> bool:
        """Call `on_announce` whenever another node announces work, until `close()`. False
        when the engine has no other nodes to hear from."""
        return False

    # -- shared ----------------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[C]:
        """A write transaction, taken at once so writers queue instead of deadlocking.
        Inside one already open on this thread it joins it: the outermost commits, and an
        exception escaping it rolls the whole back (see unit_of_work.py)."""
        c = self.conn()
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield c
            finally:
                self._local.depth -= 1
            return
        self._begin(c)
        self._local.after, self._local.depth = [], 1
        try:
            yield c
            self._local.depth = 0
            self._commit(c)
        except BaseException:
            self._local.after, self._local.depth = None, 0
            self._rollback(c)
            raise
        callbacks, self._local.after = self._local.after, None
        for fn in callbacks:
            fn()

    def claim_tx(self) -> Any:
        """The task claim's transaction (PostgreSQL: one without the write lock)."""
        return self.tx()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the current transaction commits (now, outside one): others only
        see a row after the commit, so that is when to tell them."""
        pending = getattr(self._local, "after", None)
        if pending is None:
            fn()
        else:
            pending.append(fn)

    def query(self, sql: str, params: tuple | dict = ()) -> list[Any]:
        return self.conn().execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> Any:
        """The first row, or None."""
        return self.conn().execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                self._close(c)
            self._all.clear()
        self._local = threading.local()
