"""Nodes sharing one store: heartbeats, the leader lease, and taking over a dead node's work.

A node beats every few seconds (`beat`). One whose last beat is older than `NODE_TIMEOUT`
is dead: its running tasks are handed back at once (not at their lease's end), and the
studies whose files only its spool held are retrieved again by a live node (`adopt`).
Scheduled jobs run on the holder of the `scheduler` lease (`lead`), renewed with each
beat; when the leader dies the lease lapses within `LEADER_TTL` and another node takes it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Database
from .kinds import Upload
from .names import InstanceState, StudyState, TaskState

NODE_TIMEOUT = 30.0  # seconds without a beat: the node is dead, its work moves
LEADER_TTL = 20.0  # the leader lease's length; renewed at every beat (every ~5 s)
BEAT_EVERY = 5.0

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"  # the store's clock, unix seconds
_CLOCK = f"SELECT {_NOW} AS now"
_UNDELIVERED = (InstanceState.RECEIVED, InstanceState.UPLOADED, InstanceState.REJECTED)


def live_count(c: Any) -> int:
    """How many nodes beat within NODE_TIMEOUT, on the store's clock (PostgreSQL only)."""
    row = c.execute(f"SELECT count(*) AS n FROM nodes WHERE last_seen >= {_NOW} - ?",
                    (NODE_TIMEOUT,)).fetchone()
    return int(row["n"])


@dataclass(frozen=True)
class Node:
    name: str
    owner: str
    started_at: float
    last_seen: float
    tasks_done: int
    detail: dict[str, Any]

    def alive(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.last_seen < NODE_TIMEOUT

    def public(self, now: float | None = None, leader: str | None = None) -> dict[str, Any]:
        return {"name": self.name, "alive": self.alive(now), "last_seen": self.last_seen,
                "started_at": self.started_at, "tasks_done": self.tasks_done,
                "leader": self.name == leader, **self.detail}


@dataclass(frozen=True)
class Adopted:
    node: str
    studies: tuple[str, ...]  # retrieved again by a live node
    tasks: int  # running tasks handed back


class NodeStore:
    def __init__(self, db: Database):
        self.db = db

    def beat(self, name: str, owner: str, tasks_done: int, detail: dict[str, Any]) -> None:
        """This node is alive (a new owner: the node restarted, its start time resets)."""
        with self.db.tx() as c:
            now = self._now(c)
            c.execute(
                "INSERT INTO nodes (name, owner, started_at, last_seen, tasks_done, detail) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "started_at = CASE WHEN nodes.owner = excluded.owner THEN nodes.started_at "
                "ELSE excluded.started_at END, owner=excluded.owner, "
                "last_seen=excluded.last_seen, tasks_done=excluded.tasks_done, "
                "detail=excluded.detail",
                (name, owner, now, now, tasks_done, json.dumps(detail, sort_keys=True)))

    def left(self, owner: str) -> None:
        """A clean stop: its leases go at once (another node leads within one beat). Its
        work stays its own for NODE_TIMEOUT: a restart comes back to its spool in time."""
        with self.db.tx() as c:
            c.execute("DELETE FROM leases WHERE owner=?", (owner,))

    def all(self) -> list[Node]:
        return [Node(r["name"], r["owner"], r["started_at"], r["last_seen"], r["tasks_done"],
                     json.loads(r["detail"] or "{}"))
                for r in self.db.query("SELECT * FROM nodes ORDER BY name")]

    def lead(self, lease: str, name: str, owner: str, ttl: float = LEADER_TTL) -> bool:
        """Take or renew the named lease for this process; False while another holds it.
        Its times are the store's clock: a node whose own clock runs ahead cannot think a
        live lease lapsed."""
        with self.db.tx() as c:
            now = self._now(c)
            row = c.execute(
                "INSERT INTO leases (name, holder, owner, since, until) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, owner=excluded.owner, "
                "since = CASE WHEN leases.owner = excluded.owner THEN leases.since "
                "ELSE excluded.since END, until=excluded.until "
                "WHERE leases.owner = excluded.owner OR leases.until < ? RETURNING owner",
                (lease, name, owner, now, now + ttl, now)).fetchone()
        return row is not None and row["owner"] == owner

    def holder(self, lease: str) -> str | None:
        row = self.db.one("SELECT holder FROM leases WHERE name=? AND until >= ?",
                          (lease, self.clock()))
        return row["holder"] if row else None

    def clock(self) -> float:
        """The store's time (unix seconds): what beats and leases are measured in."""
        return self._now()

    def _now(self, c: Any = None) -> float:
        """One clock for every node: PostgreSQL's (one host: this one's)."""
        if self.db.engine != "postgresql":
            return time.time()
        row = c.execute(_CLOCK).fetchone() if c is not None else self.db.one(_CLOCK)
        return float(row["now"])

    def adopt(self, live: str) -> list[Adopted]:
        """Hand back what dead nodes held: their running tasks become pending, and each
        study with undelivered files in a dead node's spool is retrieved again (the PACS
        still has it): its rows there are forgotten, its upload unbound."""
        out: list[Adopted] = []
        with self.db.tx() as c:
            now = self._now(c)
            dead = c.execute("SELECT name, owner FROM nodes WHERE last_seen < ? AND name != ?",
                             (now - NODE_TIMEOUT, live)).fetchall()
            for node in dead:
                n = c.execute(
                    "UPDATE tasks SET state='pending', lease_owner=NULL, lease_until=NULL, "
                    "updated_at=? WHERE state='running' AND lease_owner=?",
                    (now, node["owner"])).rowcount
                studies = tuple(r[0] for r in c.execute(
                    f"SELECT DISTINCT study_uid FROM instances WHERE node=? AND state IN "
                    f"({','.join('?' * len(_UNDELIVERED))}) ORDER BY study_uid",
                    (node["name"], *_UNDELIVERED)).fetchall())
                for uid in studies:
                    self._forget_files(c, node["name"], uid, now)
                if n or studies:
                    out.append(Adopted(node["name"], studies, n))
        return out

    @staticmethod
    def _forget_files(c: Any, node: str, study_uid: str, now: float) -> None:
        c.execute(f"DELETE FROM instances WHERE node=? AND study_uid=? AND state IN "
                  f"({','.join('?' * len(_UNDELIVERED))})", (node, study_uid, *_UNDELIVERED))
        c.execute("UPDATE studies SET state=?, updated_at=? WHERE study_uid=? AND state IN "
                  "(?, ?)", (StudyState.INCOMPLETE, now, study_uid, StudyState.COMPLETE,
                             StudyState.RETRIEVING))
        c.execute("UPDATE tasks SET node=NULL, run_after=?, updated_at=? WHERE kind=? "
                  "AND node=? AND key=? AND state=?",
                  (now + NODE_TIMEOUT, now, Upload.kind, node, Upload(study_uid).key(),
                   TaskState.PENDING))

    def stale_copies(self, node: str, sop_uids: list[str]) -> set[str]:
        """Of these instances found in `node`'s spool, the ones the store does not keep
        there: recorded on another node (re-retrieved there after a take-over, moved by a
        later retrieve) or here as deleted or purged."""
        out: set[str] = set()
        for i in range(0, len(sop_uids), 500):
            chunk = sop_uids[i:i + 500]
            out.update(r["sop_uid"] for r in self.db.query(
                f"SELECT sop_uid FROM instances WHERE sop_uid IN "
                f"({','.join('?' * len(chunk))}) AND (node <> ? OR state IN (?, ?))",
                (*chunk, node, InstanceState.DELETED, InstanceState.PURGED)))
        return out
