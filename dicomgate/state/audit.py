"""The append-only audit trail (triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

import json
import time
from typing import Any

from .db import Database


class AuditStore:
    def __init__(self, db: Database):
        self.db = db

    def record(self, actor: str, action: str, subject: str | None = None,
               outcome: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Callers pass personal data already masked or hashed: audit is kept for years."""
        sql = ("INSERT INTO audit (at, actor, action, subject, outcome, detail) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        params = (time.time(), actor, action, subject, outcome,
                  json.dumps(detail or {}, ensure_ascii=False, sort_keys=True))
        with self.db.tx() as c:
            c.execute(sql, params)

    def list(self, action: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if action:
            rows = self.db.query("SELECT * FROM audit WHERE action=? ORDER BY id DESC LIMIT ?",
                                 (action, limit))
        else:
            rows = self.db.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]
