"""The state store: the only package with SQL. Feature packages meet here."""

from __future__ import annotations

from pathlib import Path

from .audit import AuditStore
from .console import ConsoleStore
from .db import Database, StateError
from .deletions import DeletionStore
from .delivery import DeliveryStore
from .dicom_events import DicomEvent, DicomEventStore
from .exams import ExamStore
from .instances import InstanceRow, InstanceStore
from .jobs import JobStore, KeyValueStore
from .overview import OverviewStore
from .portal_associations import PortalAssociation, PortalAssociationStore
from .qr import QrStore
from .sessions import SessionStore
from .tasks import ACTIVE, FINISHED, STATES, Enqueued, Task, TaskStore


class Store:
    """One object per process; its repositories share the database."""

    def __init__(self, path: Path):
        self.db = Database(path)
        self.tasks = TaskStore(self.db)
        self.jobs = JobStore(self.db)
        self.watermarks = KeyValueStore(self.db, "watermarks")
        self.facts = KeyValueStore(self.db, "kv")
        self.audit = AuditStore(self.db)
        self.instances = InstanceStore(self.db)
        self.dicom_events = DicomEventStore(self.db)
        self.portal_associations = PortalAssociationStore(self.db)
        self.overview = OverviewStore(self.db)
        self.exams = ExamStore(self.db)
        self.sessions, self.deletions = SessionStore(self.db), DeletionStore(self.db)
        self.delivery = DeliveryStore(self.db)
        self.qr = QrStore(self.db)
        self.console = ConsoleStore(self.db)  # read-only queries of the operator console

    def close(self) -> None:
        self.db.close()


__all__ = ["ACTIVE", "FINISHED", "STATES", "DicomEvent", "DicomEventStore", "Enqueued",
           "InstanceRow", "InstanceStore", "PortalAssociation", "StateError", "Store", "Task",
           "TaskStore"]
