"""The log of DICOM events dicomgate must be able to explain later: associations and
presentation contexts the Portal AET rejected, C-STOREs it refused, C-MOVE
sub-operations the PACS reported as failed, deaths of the Portal AET's process.
Kept KEEP_DAYS days."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database

KEEP_DAYS = 30
KINDS = ("association_rejected", "context_rejected", "store_refused", "suboperation_failed",
         "repair_step", "scp_process_died", "instance_suspect")


@dataclass(frozen=True)
class DicomEvent:
    id: int
    at: float
    kind: str
    calling_aet: str | None
    peer: str | None
    sop_class_uid: str | None
    transfer_syntaxes: str | None  # as proposed, in the sender's order, "\"-separated
    sop_uid: str | None
    study_uid: str | None
    status: str | None
    reason: str
    association_id: int | None = None  # the Portal AET association it happened on


class DicomEventStore:
    def __init__(self, db: Database):
        self.db = db

    def record(self, kind: str, reason: str, *, calling_aet: str | None = None,
               peer: str | None = None, sop_class_uid: str | None = None,
               transfer_syntaxes: list[str] | None = None, sop_uid: str | None = None,
               study_uid: str | None = None, status: str | None = None,
               association_id: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown DICOM event kind {kind!r}: one of {KINDS}")
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute(
                "INSERT INTO dicom_events (at, kind, calling_aet, peer, sop_class_uid, "
                "transfer_syntaxes, sop_uid, study_uid, status, reason, association_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (now, kind, calling_aet, peer, sop_class_uid,
                 "\\".join(transfer_syntaxes) if transfer_syntaxes else None, sop_uid,
                 study_uid, status, reason, association_id))
            if (cur.lastrowid or 0) % 500 == 0:  # bounded: old events go now and then
                c.execute("DELETE FROM dicom_events WHERE at < ?", (now - KEEP_DAYS * 86400,))

    def since(self, at: float, kinds: tuple[str, ...] = KINDS) -> list[DicomEvent]:
        rows = self.db.query(
            f"SELECT * FROM dicom_events WHERE at >= ? AND kind IN "
            f"({','.join('?' * len(kinds))}) ORDER BY id", (at, *kinds))
        return [DicomEvent(**dict(r)) for r in rows]

    def of_associations(self, ids: list[int], kinds: tuple[str, ...] = KINDS
                        ) -> list[DicomEvent]:
        """What happened on these Portal AET associations (the record of one C-MOVE)."""
        if not ids:
            return []
        rows = self.db.query(
            f"SELECT * FROM dicom_events WHERE association_id IN ({','.join('?' * len(ids))}) "
            f"AND kind IN ({','.join('?' * len(kinds))}) ORDER BY id", (*ids, *kinds))
        return [DicomEvent(**dict(r)) for r in rows]

    def attribute(self, ids: list[int], study_uid: str) -> None:
        """Tie events seen during a study's C-MOVE to that study (for `study show`)."""
        if not ids:
            return
        with self.db.tx() as c:
            c.execute(f"UPDATE dicom_events SET study_uid=? WHERE study_uid IS NULL AND id IN "
                      f"({','.join('?' * len(ids))})", (study_uid, *ids))

    def of_study(self, study_uid: str, limit: int = 200) -> list[DicomEvent]:
        rows = self.db.query("SELECT * FROM dicom_events WHERE study_uid=? ORDER BY id DESC "
                             "LIMIT ?", (study_uid, limit))
        return [DicomEvent(**dict(r)) for r in reversed(rows)]
