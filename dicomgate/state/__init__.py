"""The state store: the only package with SQL. Feature packages meet here."""

from __future__ import annotations

from pathlib import Path

from .audit import AuditStore
from .console import ConsoleStore
from .db import SqliteDatabase, StateError
from .deletions import DeletionStore
from .delivery import DeliveryStore
from .dicom_events import DicomEvent, DicomEventStore
from .engine import Database
from .exams import ExamStore
from .instances import InstanceRow, InstanceStore
from .jobs import FactStore, JobStore, KeyValueStore
from .nodes import NodeStore
from .overview import OverviewStore
from .pg import PgDatabase, PgLocation, StoreUnavailable
from .portal_associations import PortalAssociation, PortalAssociationStore
from .qr import QrStore
from .schema import (
    SCHEMA_VERSION,
    MigrationReport,
    NoState,
    SchemaTooNew,
    SchemaTooOld,
    require_current,
)
from .schema import migrate as _migrate
from .schema import status as schema_status
from .sessions import SessionStore
from .tasks import ACTIVE, FINISHED, STATES, Enqueued, Task, TaskStore
from .unit_of_work import UnitOfWork

Where = Path | PgLocation  # SQLite's file, or a shared PostgreSQL store


def open_database(where: Where) -> Database:
    if isinstance(where, PgLocation):
        return PgDatabase(where.url, where.state_dir, where.node)
    return SqliteDatabase(where)


def _exists(where: Where) -> bool:
    if isinstance(where, PgLocation):
        return True  # the server says whether the schema is there (require_current)
    return where.exists()


class Store:
    """One object per process; its repositories share the database.

    `Store(path)` creates or brings the schema up to date without a backup: for tests and
    throwaway sandboxes. The daemon calls `migrate` under its lock, then `Store.open`;
    every command uses `Store.open`, which never changes the schema.
    """

    def __init__(self, path: Where, *, migrate: bool = True):
        self.db = open_database(path)
        try:
            if migrate:
                _migrate(self.db, backup_dir=None)
            require_current(self.db)
        except BaseException:
            self.db.close()
            raise
        self.tasks = TaskStore(self.db)
        self.jobs = JobStore(self.db)
        self.watermarks = KeyValueStore(self.db, "watermarks")
        self.facts = FactStore(self.db)
        self.audit = AuditStore(self.db)
        self.instances = InstanceStore(self.db)
        self.dicom_events = DicomEventStore(self.db)
        self.portal_associations = PortalAssociationStore(self.db)
        self.overview = OverviewStore(self.db)
        self.exams = ExamStore(self.db)
        self.sessions, self.deletions = SessionStore(self.db), DeletionStore(self.db)
        self.delivery = DeliveryStore(self.db)
        self.qr = QrStore(self.db)
        self.nodes = NodeStore(self.db)
        self.console = ConsoleStore(self.db)  # read-only queries of the operator console

    @classmethod
    def open(cls, path: Where) -> Store:
        """The store at `path` as it is: NoState when there is none (nothing is created),
        SchemaTooOld / SchemaTooNew when its schema is not SCHEMA_VERSION."""
        if not _exists(path):
            where = getattr(path, "parent", path)
            raise NoState(f"no state yet in {where}: the daemon creates it when it "
                          "starts (systemctl start dicomgate), or run `dicomgate migrate`")
        return cls(path, migrate=False)

    def transaction(self) -> UnitOfWork:
        """`with store.transaction():` makes the repository writes inside one atomic step
        (see unit_of_work.py)."""
        return UnitOfWork(self.db)

    def schema_version(self) -> int:
        """The store's schema version (its highest applied migration)."""
        return schema_status(self.db).version

    def close(self) -> None:
        self.db.close()


def migrate(path: Where, backup_dir: Path | None) -> MigrationReport:
    """Create the store at `path` or bring its schema to SCHEMA_VERSION, backing a non-empty
    store up into `backup_dir` first. Only under the daemon lock (see schema.py)."""
    db = open_database(path)
    try:
        return _migrate(db, backup_dir)
    finally:
        db.close()


__all__ = ["ACTIVE", "FINISHED", "SCHEMA_VERSION", "STATES", "DicomEvent", "DicomEventStore",
           "Enqueued", "InstanceRow", "InstanceStore", "MigrationReport", "NoState",
           "PgLocation", "PortalAssociation", "SchemaTooNew", "SchemaTooOld", "StateError",
           "Store", "StoreUnavailable", "Task", "TaskStore", "UnitOfWork", "Where", "migrate",
           "open_database"]
