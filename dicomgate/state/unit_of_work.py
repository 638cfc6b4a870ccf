"""One atomic step over several repositories, without a connection in sight.

    with store.transaction():
        store.instances.set_state(uids, InstanceState.DELIVERED)
        store.tasks.enqueue(Upload(study_uid), reopen=True)

Every repository method writes through `Database.tx()`, which joins the transaction open on
the calling thread: inside `store.transaction()` all of them commit together or not at all;
outside one, each is its own transaction. Features therefore never hold a database
connection, and repository methods have one code path. An engine other than SQLite (a
shared PostgreSQL store) only has to give `Database`'s contract the same meaning: a
connection per thread, `tx()` that nests by joining, `after_commit`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType

from .db import Database


class UnitOfWork:
    def __init__(self, db: Database):
        self._db = db
        self._tx: AbstractContextManager | None = None

    def __enter__(self) -> UnitOfWork:
        self._tx = self._db.tx()
        self._tx.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        tx, self._tx = self._tx, None
        assert tx is not None
        return tx.__exit__(exc_type, exc, tb)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once this unit commits (others see its rows only then)."""
        self._db.after_commit(fn)
