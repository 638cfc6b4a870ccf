"""Scheduled job runs, watermarks and small key-value facts (last echo, etc.)."""

from __future__ import annotations

import json
import time
from typing import Any

from .db import Database
from .names import Fact


class JobStore:
    def __init__(self, db: Database):
        self.db = db

    def started(self, name: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT INTO job_runs (name, started_at, outcome) VALUES (?, ?, 'running') "
                      "ON CONFLICT (name) DO UPDATE SET started_at=excluded.started_at, "
                      "outcome='running'", (name, time.time()))

    def finished(self, name: str, ok: bool, detail: str = "") -> None:
        with self.db.tx() as c:
            c.execute("UPDATE job_runs SET finished_at=?, outcome=?, detail=?, runs=runs+1, "
                      "failures=failures+? WHERE name=?",
                      (time.time(), "ok" if ok else "error", detail[:2000], 0 if ok else 1, name))

    def all(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM job_runs ORDER BY name")]


class KeyValueStore:
    """Watermarks (exact resume points) and facts (JSON values) by name."""

    def __init__(self, db: Database, table: str):
        assert table in ("watermarks", "kv")
        self.db = db
        self.table = table

    def get(self, name: str, default: Any = None) -> Any:
        row = self.db.one(f"SELECT value FROM {self.table} WHERE name=?", (name,))
        return json.loads(row["value"]) if row else default

    def set(self, name: str, value: Any) -> None:
        sql = (f"INSERT INTO {self.table} (name, value, updated_at) VALUES (?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value=excluded.value, "
               "updated_at=excluded.updated_at")
        params = (name, json.dumps(value, ensure_ascii=False), time.time())
        with self.db.tx() as c:
            c.execute(sql, params)

    def all(self) -> dict[str, Any]:
        return {r["name"]: json.loads(r["value"])
                for r in self.db.query(f"SELECT name, value FROM {self.table} ORDER BY name")}


class FactStore:
    """Facts by their declared name (`names.Fact`): a bare string is refused, so a fact
    renamed in one package cannot leave another reading a name nobody writes."""

    def __init__(self, db: Database):
        self._kv = KeyValueStore(db, "kv")

    def get(self, name: Fact, default: Any = None) -> Any:
        return self._kv.get(_fact(name), default)

    def set(self, name: Fact, value: Any) -> None:
        self._kv.set(_fact(name), value)

    def all(self) -> dict[str, Any]:
        return self._kv.all()


def _fact(name: Fact) -> str:
    if not isinstance(name, Fact):
        raise TypeError(f"fact {name!r} is not declared: use a member of "
                        "dicomgate.state.names.Fact")
    return name.value
