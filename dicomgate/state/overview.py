"""Aggregates for operators: metrics, health and status read these, never feature tables."""

from __future__ import annotations

import time
from typing import Any

from .db import Database


class OverviewStore:
    def __init__(self, db: Database):
        self.db = db

    def instances_by_state(self) -> dict[str, tuple[int, int]]:
        """{state: (count, bytes)} over the instances table."""
        rows = self.db.query("SELECT state, COUNT(*) n, COALESCE(SUM(size), 0) b "
                             "FROM instances GROUP BY state")
        return {r["state"]: (r["n"], r["b"]) for r in rows}

    def spool_bytes(self) -> int:
        row = self.db.one("SELECT COALESCE(SUM(size), 0) FROM instances "
                          "WHERE state NOT IN ('purged', 'deleted')")
        return int(row[0])

    def task_latency(self, window: float = 86400.0) -> dict[str, dict[str, float]]:
        """Per kind over finished tasks of the last `window` seconds: count and seconds
        from creation to completion (mean, max)."""
        rows = self.db.query(
            "SELECT kind, COUNT(*) n, AVG(finished_at - created_at) mean, "
            "MAX(finished_at - created_at) mx FROM tasks WHERE state='done' "
            "AND finished_at > ? GROUP BY kind", (time.time() - window,))
        return {r["kind"]: {"count": r["n"], "mean": r["mean"] or 0.0, "max": r["mx"] or 0.0}
                for r in rows}

    def oldest_pending(self) -> dict[str, float]:
        rows = self.db.query("SELECT kind, MIN(created_at) t FROM tasks "
                             "WHERE state IN ('pending', 'running') GROUP BY kind")
        return {r["kind"]: r["t"] for r in rows}

    def job_runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM job_runs ORDER BY name")]
