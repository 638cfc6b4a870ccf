"""Upstream delivery SQL: upload attempts (instance_uploads), backlog and retention reads,
the REST send log (upstream_sends). Exams, studies and instances are written by their owners:
exams.py, instances.py."""

from __future__ import annotations

import time
from typing import Any

from .db import Database

BACKLOG_STATES = ("received", "uploaded")


class DeliveryStore:
    def __init__(self, db: Database):
        self.db = db

    # -- per-instance upload attempts -----------------------------------------------------
    def mark_sending(self, sop_uids: list[str]) -> None:
        """Recorded before a batch leaves: after a crash, these may already be in the cloud."""
        now = time.time()
        with self.db.tx() as c:
            c.executemany(
                "INSERT INTO instance_uploads (sop_uid, attempts, last_status, last_at) "
                "VALUES (?, 1, 'sending', ?) ON CONFLICT (sop_uid) DO UPDATE SET "
                "attempts=instance_uploads.attempts+1, last_status='sending', "
                "last_at=excluded.last_at",
                [(u, now) for u in sop_uids])

    def set_upload_status(self, statuses: dict[str, str]) -> None:
        now = time.time()
        with self.db.tx() as c:
            c.executemany("UPDATE instance_uploads SET last_status=?, last_at=? WHERE sop_uid=?",
                          [(s, now, u) for u, s in statuses.items()])

    def attempts(self, sop_uids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sop_uids, 500):
            rows = self.db.query(
                f"SELECT * FROM instance_uploads WHERE sop_uid IN ({','.join('?' * len(chunk))})",
                tuple(chunk))
            out.update({r["sop_uid"]: dict(r) for r in rows})
        return out

    def studies_awaiting_upload(self) -> list[str]:
        """Studies with received instances that never had an upload task (received while
        [upstream] was off); withdrawn or deleted studies stay where they are."""
        rows = self.db.query(
            "SELECT DISTINCT i.study_uid FROM instances i WHERE i.state='received' AND NOT "
            "EXISTS (SELECT 1 FROM tasks t WHERE t.kind='upload' AND t.key='study:' || "
            "i.study_uid) AND NOT EXISTS (SELECT 1 FROM studies s WHERE s.study_uid="
            "i.study_uid AND s.state IN ('withdrawn', 'deleted'))")
        return [r[0] for r in rows]

    def ever_sent(self, study_uid: str) -> bool:
        """Has any instance of this study left for the cloud without a recorded outcome?"""
        row = self.db.one(
            "SELECT 1 FROM instances i JOIN instance_uploads u ON u.sop_uid=i.sop_uid "
            "WHERE i.study_uid=? AND i.state='received' LIMIT 1", (study_uid,))
        return row is not None

    def study_upload_rows(self, study_uid: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT i.sop_uid, i.series_uid, i.size, i.state, i.error, i.received_at, "
            "i.updated_at, i.delivered_at, i.path, u.attempts, u.last_status, u.last_at "
            "FROM instances i LEFT JOIN instance_uploads u ON u.sop_uid=i.sop_uid "
            "WHERE i.study_uid=? ORDER BY i.series_uid, i.sop_uid", (study_uid,))
        return [dict(r) for r in rows]

    def rejected(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT sop_uid, study_uid, error, updated_at FROM instances "
                             "WHERE state='rejected' ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    # -- backlog and spool ----------------------------------------------------------------
    def backlog(self) -> dict[str, Any]:
        now = time.time()
        row = self.db.one(
            f"SELECT COUNT(*) n, COALESCE(SUM(size), 0) bytes, MIN(received_at) oldest, "
            f"COUNT(DISTINCT study_uid) studies FROM instances "
            f"WHERE state IN ({','.join('?' * len(BACKLOG_STATES))})", BACKLOG_STATES)
        spool = self.db.one(
            "SELECT COUNT(*) n, COALESCE(SUM(size), 0) bytes FROM instances "
            "WHERE path IS NOT NULL AND state NOT IN ('purged', 'deleted')")
        by_state = {r["state"]: r["n"] for r in self.db.query(
            "SELECT state, COUNT(*) n FROM instances GROUP BY state")}
        return {
            "backlog_instances": row["n"], "backlog_bytes": row["bytes"],
            "backlog_studies": row["studies"],
            "oldest_age_seconds": None if row["oldest"] is None else round(now - row["oldest"]),
            "spool_instances": spool["n"], "spool_bytes": spool["bytes"],
            "instances_by_state": by_state,
        }

    # -- retention ------------------------------------------------------------------------
    def purgeable(self, older_than: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Instances still on disk whose delivery was confirmed before the cutoff, or whose
        study was withdrawn (the exam refunded; the cloud dropped it) before the cutoff.
        Nodes sharing a store: only this node's files (each node purges its own spool)."""
        node = () if self.db.node is None else (self.db.node,)
        mine = "AND node = ? " if node else ""
        rows = self.db.query(
            "SELECT sop_uid, study_uid, path, size, sha256 FROM instances WHERE path IS NOT NULL "
            "AND ((state='delivered' AND delivered_at IS NOT NULL AND delivered_at < ?) "
            f"OR (state NOT IN ('purged', 'deleted') AND study_uid IN ({_WITHDRAWN_BEFORE}))) "
            f"{mine}ORDER BY COALESCE(delivered_at, updated_at) LIMIT ?",
            (older_than, older_than, *node, limit))
        return [dict(r) for r in rows]

    # -- REST send log ----------------------------------------------------------------------
    def log_send(self, kind: str, key: str, idempotency_key: str, http_status: int | None,
                 outcome: str, message: str | None) -> None:
        with self.db.tx() as c:
            c.execute("INSERT INTO upstream_sends (kind, key, idempotency_key, http_status, "
                      "outcome, message, at) VALUES (?,?,?,?,?,?,?)",
                      (kind, key, idempotency_key, http_status, outcome,
                       (message or "")[:1000], time.time()))

    def sends(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT * FROM upstream_sends"
        params: tuple = ()
        if kind:
            sql += " WHERE kind=?"
            params = (kind,)
        return [dict(r) for r in self.db.query(sql + " ORDER BY id DESC LIMIT ?",
                                               (*params, limit))]

    def studies_with_backlog(self) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT DISTINCT study_uid FROM instances WHERE state IN ('received', 'uploaded')")]


_WITHDRAWN_BEFORE = "SELECT study_uid FROM studies WHERE state='withdrawn' AND updated_at < ?"


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i:i + n] for i in range(0, len(items), n)]
