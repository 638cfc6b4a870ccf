"""Doctor login sessions of the HTTP shim (spec 4.4.3.1) and their audit, in one transaction."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .audit import AuditStore
from .db import Database
from .jobs import FactStore
from .names import Fact, SessionState, member

_SALT_KEY = Fact.SHIM_ID_HASH_SALT


class SessionStore:
    def __init__(self, db: Database):
        self.db = db
        self._audit = AuditStore(db)
        self._kv = FactStore(db)

    def salt(self) -> bytes:
        """A per-installation salt for hashing doctors' ID numbers (created once)."""
        value = self._kv.get(_SALT_KEY)
        if value is None:
            with self.db.tx() as c:
                row = c.execute("SELECT value FROM kv WHERE name=?", (_SALT_KEY,)).fetchone()
                if row is None:
                    self._kv.set(_SALT_KEY, secrets.token_hex(32))
            value = self._kv.get(_SALT_KEY)
        return bytes.fromhex(value)

    def open(self, hospital_id: str, his_user_id: str, detail: dict[str, Any],
             id_hash: str | None, ttl: float, audit: dict[str, Any]) -> int:
        """Open a session, closing any earlier open one of the same account."""
        now = time.time()
        with self.db.tx() as c:
            c.execute("UPDATE doctor_sessions SET state='closed', closed_at=? "
                      "WHERE hospital_id=? AND his_user_id=? AND state='open'",
                      (now, hospital_id, his_user_id))
            cur = c.execute(
                "INSERT INTO doctor_sessions (his_user_id, hospital_id, state, detail, id_hash, "
                "opened_at, expires_at) VALUES (?, ?, 'open', ?, ?, ?, ?)",
                (his_user_id, hospital_id, json.dumps(detail, ensure_ascii=False, sort_keys=True),
                 id_hash, now, now + ttl))
            self._audit.record(his_user_id, "doctor.login", f"{hospital_id}:{his_user_id}",
                               "ok", audit)
            return int(cur.lastrowid)

    def close(self, hospital_id: str, his_user_id: str, audit: dict[str, Any]) -> int:
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute("UPDATE doctor_sessions SET state='closed', closed_at=? "
                            "WHERE hospital_id=? AND his_user_id=? AND state='open'",
                            (now, hospital_id, his_user_id))
            self._audit.record(his_user_id, "doctor.logout", f"{hospital_id}:{his_user_id}",
                               "ok" if cur.rowcount else "no open session", audit)
            return cur.rowcount

    def active(self, hospital_id: str, his_user_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM doctor_sessions WHERE hospital_id=? AND his_user_id=? "
                          "AND state='open' AND (expires_at IS NULL OR expires_at>?) "
                          "ORDER BY id DESC LIMIT 1", (hospital_id, his_user_id, time.time()))
        return _public(row) if row else None

    def close_expired(self) -> int:
        now = time.time()
        with self.db.tx() as c:
            return c.execute("UPDATE doctor_sessions SET state='closed', closed_at=expires_at "
                             "WHERE state='open' AND expires_at<=?", (now,)).rowcount

    def list(self, state: SessionState | None = None,
             limit: int = 100) -> list[dict[str, Any]]:
        if state is not None:
            rows = self.db.query("SELECT * FROM doctor_sessions WHERE state=? ORDER BY id DESC "
                                 "LIMIT ?", (member(SessionState, state).value, limit))
        else:
            rows = self.db.query("SELECT * FROM doctor_sessions ORDER BY id DESC LIMIT ?",
                                 (limit,))
        return [_public(r) for r in rows]

    def count_open(self) -> int:
        row = self.db.one("SELECT COUNT(*) FROM doctor_sessions WHERE state='open' AND "
                          "(expires_at IS NULL OR expires_at>?)", (time.time(),))
        return int(row[0])


def _public(row) -> dict[str, Any]:
    d = dict(row)
    d["detail"] = json.loads(d["detail"] or "{}")
    return d
