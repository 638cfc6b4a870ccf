"""The Portal AET's record of each incoming association (migration m590): written by the
storage SCP as it accepts, stores and refuses, read by the retrieve for its own C-MOVE.

Every write lands before the SCP answers the PACS (the association row before the
A-ASSOCIATE-AC/RJ, the counts in the C-STORE's own transaction), so once the PACS sends
its final C-MOVE response the record of that move is complete: no waiting, no clocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database

KEEP_DAYS = 30
MAX_STUDIES_TEXT = 1400  # study UIDs kept per association (a modality may send many)


@dataclass(frozen=True)
class PortalAssociation:
    id: int
    opened_at: float
    ended_at: float | None
    calling_aet: str | None
    peer: str | None
    outcome: str
    move_aet: str | None
    move_msg_id: int | None
    study_uids: str | None
    stored: int
    refused: int
    last_at: float | None
    scp_pid: int | None = None

    def carried(self, study_uid: str) -> bool:
        return study_uid in (self.study_uids or "").split()


class PortalAssociationStore:
    def __init__(self, db: Database):
        self.db = db

    def opened(self, calling_aet: str, peer: str, scp_pid: int | None = None) -> int:
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute("INSERT INTO portal_associations (opened_at, calling_aet, peer, "
                            "outcome, scp_pid) VALUES (?,?,?,'open',?)",
                            (now, calling_aet, peer, scp_pid))
            rowid = int(cur.lastrowid or 0)
            if rowid % 500 == 0:  # bounded: old rows go now and then
                c.execute("DELETE FROM portal_associations WHERE opened_at < ?",
                          (now - KEEP_DAYS * 86400,))
        return rowid

    def rejected(self, association_id: int) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE portal_associations SET outcome='rejected', ended_at=? "
                      "WHERE id=?", (time.time(), association_id))

    def ended(self, association_id: int, outcome: str) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE portal_associations SET outcome=?, ended_at=? WHERE id=? AND "
                      "outcome='open'", (outcome, time.time(), association_id))

    def counted(self, association_id: int, *, study_uid: str | None, move_aet: str | None,
                move_msg_id: int | None, stored: int = 0, refused: int = 0) -> None:
        """One C-STORE handled on the association (inside the caller's transaction when one
        is open: the instance row and this count commit together)."""
        sql = ("UPDATE portal_associations SET stored=stored+?, refused=refused+?, last_at=?, "
               "move_aet=COALESCE(move_aet, ?), move_msg_id=COALESCE(move_msg_id, ?), "
               "study_uids=CASE WHEN ? IS NULL OR instr(' ' || COALESCE(study_uids, '') || ' ', "
               "' ' || ? || ' ') > 0 OR length(COALESCE(study_uids, '')) > ? THEN study_uids "
               "ELSE ltrim(COALESCE(study_uids, '') || ' ' || ?) END WHERE id=?")
        params = (stored, refused, time.time(), move_aet, move_msg_id, study_uid, study_uid,
                  MAX_STUDIES_TEXT, study_uid, association_id)
        with self.db.tx() as c:
            c.execute(sql, params)

    def of_move(self, move_aet: str, move_msg_id: int, study_uid: str, since: float
                ) -> list[PortalAssociation]:
        """The associations that served one C-MOVE: those whose C-STOREs named it as their
        move originator, and those opened since it started whose C-STOREs named no
        originator but carried its study (a PACS that leaves the originator out)."""
        rows = self.db.query(
            "SELECT * FROM portal_associations WHERE opened_at >= ? AND ((move_aet=? AND "
            "move_msg_id=?) OR (move_msg_id IS NULL AND instr(' ' || COALESCE(study_uids, '') "
            "|| ' ', ' ' || ? || ' ') > 0)) ORDER BY id", (since, move_aet, move_msg_id,
                                                           study_uid))
        return [PortalAssociation(**dict(r)) for r in rows]

    def unclaimed(self, since: float) -> list[PortalAssociation]:
        """Associations opened since `since` that carried no C-STORE (rejected, or closed
        empty): they may belong to any C-MOVE under way then."""
        rows = self.db.query("SELECT * FROM portal_associations WHERE opened_at >= ? AND "
                             "stored=0 AND refused=0 ORDER BY id", (since,))
        return [PortalAssociation(**dict(r)) for r in rows]

    def opened_since(self, since: float) -> list[PortalAssociation]:
        """Every association the Portal AET received since `since` (oldest first)."""
        rows = self.db.query("SELECT * FROM portal_associations WHERE opened_at >= ? "
                             "ORDER BY id", (since,))
        return [PortalAssociation(**dict(r)) for r in rows]
