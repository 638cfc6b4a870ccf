"""SQL of scp_events: what our storage SCP refused or suffered, by time (images feature)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database

KEEP_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class ScpEvent:
    at: float
    cause: str  # out_of_space | quarantined | failed | process_died
    reason: str
    sop_uid: str | None = None
    status: str | None = None


class ScpEventStore:
    def __init__(self, db: Database):
        self.db = db

    def add(self, cause: str, reason: str, *, sop_uid: str | None = None,
            calling_aet: str | None = None, status: str | None = None) -> None:
        now = time.time()
        with self.db.tx() as c:
            c.execute("INSERT INTO scp_events (at, cause, sop_uid, calling_aet, status, reason) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (now, cause, sop_uid, calling_aet, status, reason[:2000]))
            c.execute("DELETE FROM scp_events WHERE at < ?", (now - KEEP_SECONDS,))

    def between(self, start: float, end: float) -> list[ScpEvent]:
        rows = self.db.query("SELECT at, cause, reason, sop_uid, status FROM scp_events "
                             "WHERE at >= ? AND at <= ? ORDER BY at", (start, end))
        return [ScpEvent(r["at"], r["cause"], r["reason"], r["sop_uid"], r["status"])
                for r in rows]

    def quarantined_sop_uids(self, sop_uids: set[str]) -> dict[str, str]:
        """{sop_uid: reason} for those of `sop_uids` our SCP ever quarantined (kept 7 days)."""
        if not sop_uids:
            return {}
        out: dict[str, str] = {}
        uids = sorted(sop_uids)
        for i in range(0, len(uids), 500):
            part = uids[i:i + 500]
            rows = self.db.query(
                f"SELECT sop_uid, reason FROM scp_events WHERE cause='quarantined' AND "
                f"sop_uid IN ({','.join('?' * len(part))}) ORDER BY at", tuple(part))
            out.update({r["sop_uid"]: r["reason"] for r in rows})
        return out
