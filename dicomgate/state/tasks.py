"""The durable task queue's SQL: enqueue, claim with a lease, finish, retry, dead.

States: pending -> running -> done | pending (retry) | dead; pending/running ->
cancelled. (kind, key) is unique: enqueueing the same work twice yields one task.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import kinds
from .db import Database
from .doorbell import Doorbell
from .kinds import KINDS, TaskKind
from .names import TaskState, member
from .nodes import live_count

ACTIVE = (TaskState.PENDING, TaskState.RUNNING)
FINISHED = (TaskState.DONE, TaskState.DEAD, TaskState.CANCELLED)
STATES = tuple(TaskState)


@dataclass(frozen=True)
class Task:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    state: TaskState
    attempts: int
    max_attempts: int | None
    run_after: float
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    result: str | None
    exam_id: int | None
    study_uid: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    waiting_for: str | None = None  # while pending after a WaitFor: its cause
    node: str | None = None  # the only node that may run it (its files are there); None: any
    # The payload as its kind (state/kinds.py), decoded once here; None when the row does
    # not decode, and `malformed` says which field (the worker makes such a task dead).
    work: TaskKind | None = None
    malformed: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Task:
        d = dict(row)
        d.pop("rerun", None)
        d["state"] = TaskState(d["state"])
        try:
            d["payload"] = json.loads(d["payload"] or "{}")
            d["work"] = kinds.decode(d["kind"], d["payload"])
        except (ValueError, TypeError) as exc:  # MalformedTask and JSONDecodeError included
            d["malformed"] = f"payload does not decode: {exc}"
            d.setdefault("work", None)
            if isinstance(d["payload"], str):
                d["payload"] = {}
        return cls(**d)

    def public(self) -> dict[str, Any]:
        """A JSON-friendly view for the CLI (payloads hold no personal data by design)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "work"}
        if self.malformed is None:
            out.pop("malformed")
        return out


@dataclass(frozen=True)
class Enqueued:
    id: int
    created: bool  # False: an active task with this kind and key already existed


class TaskStore:
    def __init__(self, db: Database):
        self.db = db
        # Called with the kind after a task becomes due by enqueue (once committed), so
        # local workers start at once instead of at their next poll.
        self.listeners: list[Callable[[str], None]] = []
        self.doorbell = Doorbell(db.path.parent / "wake.sock")  # the daemon, elsewhere
        self.completed = 0  # tasks this process completed (a node's `tasks_done`)
        self._count_lock = threading.Lock()

    def _announce(self, conn: Any, kind: str) -> None:
        self.db.announce(conn, kind)  # other nodes: delivered with the commit

        def notify() -> None:
            for fn in self.listeners:
                fn(kind)
            self.doorbell.ring()

        self.db.after_commit(notify)

    def enqueue(self, task: TaskKind, *, delay: float = 0.0,
                reopen: bool = False, max_attempts: int | None = None,
                exam_id: int | None = None, study_uid: str | None = None) -> Enqueued:
        """Add a task (a kind declared in state/kinds.py) once per (kind, key); the key is
        the kind's `key()`, a function of the payload. A pending task the new one
        `supersedes()` is cancelled.

        An active task with the same key is left as it is (a running one is marked
        to run again when it ends if `reopen`); a finished one is reopened only if
        `reopen` (e.g. a study that grew after its retrieve completed).
        Inside `store.transaction()` it is part of that step.
        """
        kinds.check(task)
        with self.db.tx() as conn:
            return self._enqueue(conn, task, delay, reopen, max_attempts, exam_id, study_uid)

    def _enqueue(self, conn: Any, task: TaskKind, delay: float, reopen: bool,
                 max_attempts: int | None, exam_id: int | None,
                 study_uid: str | None) -> Enqueued:
        now = time.time()
        kind, key = task.kind, task.key()
        body = json.dumps(task.to_json(), ensure_ascii=False, sort_keys=True)
        for old in task.supersedes():
            conn.execute("UPDATE tasks SET state='cancelled', last_error=?, finished_at=?, "
                         "updated_at=? WHERE kind=? AND key=? AND state='pending'",
                         (f"superseded by {kind} {key}", now, now, kind, old))
        row = conn.execute("SELECT id, state FROM tasks WHERE kind=? AND key=?",
                           (kind, key)).fetchone()
        node = self._node_of(conn, task)
        if row is None:
            cur = conn.execute(
                "INSERT INTO tasks (kind, key, payload, state, run_after, max_attempts, "
                "exam_id, study_uid, created_at, updated_at, node) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                (kind, key, body, now + delay, max_attempts, exam_id, study_uid, now, now,
                 node))
            self._announce(conn, kind)
            return Enqueued(int(cur.lastrowid), True)
        task_id, state = int(row["id"]), row["state"]
        if not reopen:
            return Enqueued(task_id, False)
        if state == "running":
            conn.execute("UPDATE tasks SET rerun=1, payload=?, updated_at=?, node=? "
                         "WHERE id=?", (body, now, node, task_id))
        elif state == "pending":
            conn.execute("UPDATE tasks SET payload=?, updated_at=?, node=? WHERE id=?",
                         (body, now, node, task_id))
        else:
            conn.execute(
                "UPDATE tasks SET state='pending', attempts=0, rerun=0, payload=?, "
                "run_after=?, last_error=NULL, finished_at=NULL, updated_at=?, node=? "
                "WHERE id=?", (body, now + delay, now, node, task_id))
            self._announce(conn, kind)
        return Enqueued(task_id, state in FINISHED)

    def _node_of(self, conn: Any, task: TaskKind) -> str | None:
        """Nodes sharing a store: an upload runs where its study's files are (the node
        whose spool holds its undelivered instances; else this one), a spool purge on
        the node it names. One host: None."""
        if self.db.node is None:
            return None
        if isinstance(task, kinds.SpoolPurge):  # the node whose spool holds the files
            return task.node
        if not isinstance(task, kinds.Upload):
            return None
        row = conn.execute("SELECT node FROM instances WHERE study_uid=? AND node IS NOT NULL "
                           "AND state IN ('received', 'uploaded', 'rejected') "
                           "ORDER BY updated_at DESC LIMIT 1", (task.study_uid,)).fetchone()
        return row["node"] if row else self.db.node

    def claim(self, kinds: list[str], owner: str, lease: float) -> Task | None:
        """Take the oldest due task of one of `kinds`, leased to `owner`."""
        if not kinds:
            return None
        now = time.time()
        marks = ",".join("?" * len(kinds))
        # PostgreSQL: nodes claim at once; a row another node is taking is skipped, never
        # waited for nor taken twice. SQLite has one writer and no FOR UPDATE.
        skip = " FOR UPDATE SKIP LOCKED" if self.db.engine == "postgresql" else ""
        mine = "" if self.db.node is None else " AND (node IS NULL OR node = ?)"
        with self.db.claim_tx() as c:
            row = c.execute(
                f"UPDATE tasks SET state='running', lease_owner=?, lease_until=?, "
                f"attempts=attempts+1, updated_at=? WHERE id = ("
                f"SELECT id FROM tasks WHERE state='pending' AND run_after<=? "
                f"AND kind IN ({marks}){mine} ORDER BY run_after, id LIMIT 1{skip}) "
                f"RETURNING *",
                (owner, now + lease, now, now, *kinds,
                 *(() if self.db.node is None else (self.db.node,)))).fetchone()
        return Task.from_row(row) if row else None

    def claim_more(self, kind: str, owner: str, lease: float, limit: int) -> list[Task]:
        """Up to `limit` more due tasks of one kind for a worker that already runs one (a
        batch of uploads or of C-MOVEs), oldest first, each leased to `owner` as `claim` leases; the
        caller renews, completes or fails each one by its id. Nodes sharing a store take
        at most their share of the unbound due tasks, so a backlog spreads over them."""
        if limit <= 0:
            return []
        now = time.time()
        with self.db.claim_tx() as c:
            if self.db.node is None:
                ids = self._due_ids(c, kind, now, "", (), limit)
            else:
                share = self._fair_share(c, kind, owner, now, limit)
                ids = sorted(self._due_ids(c, kind, now, " AND node = ?", (self.db.node,), limit)
                             + self._due_ids(c, kind, now, " AND node IS NULL", (), share))
            ids = ids[:limit]
            if not ids:
                return []
            rows = c.execute(
                f"UPDATE tasks SET state='running', lease_owner=?, lease_until=?, "
                f"attempts=attempts+1, updated_at=? WHERE id IN ({','.join('?' * len(ids))}) "
                f"RETURNING *", (owner, now + lease, now, *(i for _, i in ids))).fetchall()
        return sorted((Task.from_row(r) for r in rows), key=lambda t: (t.run_after, t.id))

    def _due_ids(self, c: Any, kind: str, now: float, where: str, args: tuple[Any, ...],
                 limit: int) -> list[tuple[float, int]]:
        """The oldest due pending tasks of `kind` as (run_after, id); on PostgreSQL locked
        for this transaction, a row another node is taking skipped."""
        if limit <= 0:
            return []
        skip = " FOR UPDATE SKIP LOCKED" if self.db.engine == "postgresql" else ""
        rows = c.execute(
            f"SELECT id, run_after FROM tasks WHERE state='pending' AND run_after<=? "
            f"AND kind=?{where} ORDER BY run_after, id LIMIT ?{skip}",
            (now, kind, *args, limit)).fetchall()
        return [(float(r["run_after"]), int(r["id"])) for r in rows]

    @staticmethod
    def _fair_share(c: Any, kind: str, owner: str, now: float, limit: int) -> int:
        """How many more unbound due tasks of `kind` this node takes: all it asks for when
        it is alone, else what brings it to its part of the kind's work (running or due)
        among the live nodes; it never waits for the others to take theirs."""
        live = live_count(c)
        if live <= 1:
            return limit
        row = c.execute(
            "SELECT count(*) AS work, "
            "SUM(CASE WHEN state='running' AND lease_owner=? THEN 1 ELSE 0 END) AS mine "
            "FROM tasks WHERE kind=? AND node IS NULL AND (state='running' OR "
            "(state='pending' AND run_after<=?))", (owner, kind, now)).fetchone()
        return max(0, min(limit, -(-int(row["work"]) // live) - int(row["mine"] or 0)))

    def take_reruns(self, task_ids: list[int], owner: str) -> list[int]:
        """Clear the "run again" mark that `enqueue(reopen=True)` left on running tasks of
        `owner`, for a handler about to read everything those enqueues announced (what is
        committed before this returns); a later enqueue marks the task again. Returns the
        ids that were marked. Reads first: nothing marked, nothing written."""
        if not task_ids:
            return []
        marks = ",".join("?" * len(task_ids))
        marked = [int(r["id"]) for r in self.db.query(
            f"SELECT id FROM tasks WHERE rerun=1 AND lease_owner=? AND id IN ({marks})",
            (owner, *task_ids))]
        if marked:
            with self.db.tx() as c:
                c.execute(f"UPDATE tasks SET rerun=0 WHERE state='running' AND lease_owner=? "
                          f"AND id IN ({','.join('?' * len(marked))})", (owner, *marked))
        return marked

    def claim_key(self, kind: str, key: str, owner: str, lease: float) -> Task | None:
        """Claim one named pending task, due or not (`push --once --study`)."""
        now = time.time()
        with self.db.tx() as c:
            row = c.execute(
                "UPDATE tasks SET state='running', lease_owner=?, lease_until=?, "
                "attempts=attempts+1, updated_at=? WHERE kind=? AND key=? AND state='pending' "
                "RETURNING *", (owner, now + lease, now, kind, key)).fetchone()
        return Task.from_row(row) if row else None

    def drop_rerun(self, task_id: int, owner: str, asked_before: float) -> bool:
        """A running task's rerun is not needed when it was asked for (enqueued again with
        `reopen`) before `asked_before`, the moment the task's work looked afresh (the
        batch's C-FIND came after the reopen): the task then ends done."""
        with self.db.tx() as c:
            return c.execute("UPDATE tasks SET rerun=0 WHERE id=? AND state='running' AND "
                             "lease_owner=? AND rerun=1 AND updated_at < ?",
                             (task_id, owner, asked_before)).rowcount == 1

    def make_due(self, kinds: tuple[str, ...]) -> int:
        """Pending tasks of `kinds` waiting out a backoff run now (an operator's push, or
        the peer they wait for is back). A kind not declared is an error, not 0 tasks."""
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"task kinds {unknown} are not declared in state/kinds.py")
        now = time.time()
        with self.db.tx() as c:
            return c.execute(
                f"UPDATE tasks SET run_after=?, updated_at=? WHERE state='pending' "
                f"AND run_after > ? AND kind IN ({','.join('?' * len(kinds))})",
                (now, now, now, *kinds)).rowcount

    def renew(self, task_ids: list[int], owner: str, lease: float) -> None:
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        with self.db.tx() as c:
            c.execute(f"UPDATE tasks SET lease_until=? WHERE lease_owner=? AND state='running' "
                      f"AND id IN ({marks})", (time.time() + lease, owner, *task_ids))

    def complete(self, task_id: int, owner: str, result: str | None = None) -> bool:
        """Mark done (or pending again if a rerun was asked for meanwhile)."""
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute(
                "UPDATE tasks SET state = CASE rerun WHEN 1 THEN 'pending' ELSE 'done' END, "
                "attempts = CASE rerun WHEN 1 THEN 0 ELSE attempts END, "
                "finished_at = CASE rerun WHEN 1 THEN NULL ELSE ? END, run_after=?, rerun=0, "
                "result=?, last_error=NULL, lease_owner=NULL, lease_until=NULL, updated_at=? "
                "WHERE id=? AND state='running' AND lease_owner=?",
                (now, now, result, now, task_id, owner))
        if cur.rowcount != 1:
            return False
        with self._count_lock:
            self.completed += 1
        return True

    def fail(self, task_id: int, owner: str, error: str, *, retry_in: float | None,
             dead: bool = False, refund: bool = False,
             waiting: str | None = None) -> TaskState:
        """Record a failure: back to pending after `retry_in` seconds, or dead.

        `refund`: the attempt does not count (the task waited for a peer or the disk);
        `waiting`: what it waits for (kept while pending, for `status`)."""
        now = time.time()
        state = TaskState.DEAD if dead or retry_in is None else TaskState.PENDING
        with self.db.tx() as c:
            c.execute(
                "UPDATE tasks SET state=?, last_error=?, run_after=?, lease_owner=NULL, "
                "lease_until=NULL, finished_at=?, updated_at=?, waiting_for=?, "
                "attempts = CASE WHEN ? = 1 THEN MAX(attempts-1, 0) ELSE attempts END "
                "WHERE id=? AND state='running' AND lease_owner=?",
                (state.value, error[:4000], now + (retry_in or 0),
                 now if state is TaskState.DEAD else None,
                 now, waiting if state is TaskState.PENDING else None,
                 1 if refund and state is TaskState.PENDING else 0, task_id, owner))
        return state

    def release(self, task_id: int, owner: str) -> None:
        """Give a claimed task back untouched (shutdown): the attempt does not count."""
        with self.db.tx() as c:
            c.execute("UPDATE tasks SET state='pending', attempts=MAX(attempts-1, 0), "
                      "lease_owner=NULL, lease_until=NULL, run_after=?, updated_at=? "
                      "WHERE id=? AND state='running' AND lease_owner=?",
                      (time.time(), time.time(), task_id, owner))

    def reclaim_expired(self, now: float | None = None) -> int:
        """Leases past their end belong to a dead worker: make those tasks pending."""
        now = time.time() if now is None else now
        with self.db.tx() as c:
            cur = c.execute("UPDATE tasks SET state='pending', lease_owner=NULL, "
                            "lease_until=NULL, updated_at=? "
                            "WHERE state='running' AND lease_until < ?", (now, now))
        return cur.rowcount

    def reclaim_foreign(self, owner: str) -> int:
        """At start-up, tasks leased by any other owner were left by a dead process (nodes
        sharing a store: any other owner on this node; owners are `node:pid:ms`)."""
        node = "" if self.db.node is None else " AND substr(lease_owner, 1, ?) = ?"
        prefix = f"{self.db.node}:"
        with self.db.tx() as c:
            cur = c.execute("UPDATE tasks SET state='pending', lease_owner=NULL, "
                            "lease_until=NULL, updated_at=? "
                            f"WHERE state='running' AND lease_owner != ?{node}",
                            (time.time(), owner,
                             *(() if self.db.node is None else (len(prefix), prefix))))
        return cur.rowcount

    def cancel(self, task_id: int, reason: str) -> bool:
        sql = ("UPDATE tasks SET state='cancelled', last_error=?, finished_at=?, updated_at=?, "
               "lease_owner=NULL, lease_until=NULL WHERE id=? AND state IN ('pending','running')")
        now = time.time()
        with self.db.tx() as c:
            return c.execute(sql, (reason, now, now, task_id)).rowcount == 1

    def retry(self, task_id: int) -> bool:
        """An administrator's retry of a dead (or cancelled) task: due now, attempts reset."""
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute("UPDATE tasks SET state='pending', attempts=0, run_after=?, "
                            "finished_at=NULL, updated_at=? "
                            "WHERE id=? AND state IN ('dead','cancelled')", (now, now, task_id))
        return cur.rowcount == 1

    def retry_all_dead(self) -> int:
        now = time.time()
        with self.db.tx() as c:
            cur = c.execute("UPDATE tasks SET state='pending', attempts=0, run_after=?, "
                            "finished_at=NULL, updated_at=? WHERE state='dead'", (now, now))
        return cur.rowcount

    def get(self, task_id: int) -> Task | None:
        row = self.db.one("SELECT * FROM tasks WHERE id=?", (task_id,))
        return Task.from_row(row) if row else None

    def find(self, kind: str, key: str) -> Task | None:
        row = self.db.one("SELECT * FROM tasks WHERE kind=? AND key=?", (kind, key))
        return Task.from_row(row) if row else None

    def list(self, state: TaskState | None = None, kind: str | None = None,
             study_uid: str | None = None, exam_id: int | None = None,
             limit: int = 1000) -> list[Task]:
        where: list[str] = []
        params: list[Any] = []
        if kind is not None and kind not in KINDS:
            raise ValueError(f"task kind {kind!r} is not declared in state/kinds.py")
        value = None if state is None else member(TaskState, state).value
        for col, val in (("state", value), ("kind", kind), ("study_uid", study_uid),
                         ("exam_id", exam_id)):
            if val is not None:
                where.append(f"{col}=?")
                params.append(val)
        sql = "SELECT * FROM tasks" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [Task.from_row(r) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {state: n}}."""
        out: dict[str, dict[str, int]] = {}
        for r in self.db.query("SELECT kind, state, COUNT(*) n FROM tasks GROUP BY kind, state"):
            out.setdefault(r["kind"], {})[r["state"]] = r["n"]
        return out

    def queue_by_kind(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Active work per kind for `status`: {kind: {"running", "due", "later",
        "waiting": {reason: n}}}; `due` is pending and runnable now, `later` pending in a
        backoff, `waiting` pending tasks that wait for something (PACS, disk space)."""
        now = time.time() if now is None else now
        out: dict[str, dict[str, Any]] = {}
        rows = self.db.query(
            "SELECT kind, state, run_after <= ? AS due, waiting_for, COUNT(*) n FROM tasks "
            "WHERE state IN ('pending', 'running') GROUP BY kind, state, due, waiting_for",
            (now,))
        for r in rows:
            k = out.setdefault(r["kind"], {"running": 0, "due": 0, "later": 0, "waiting": {}})
            if r["state"] == "running":
                k["running"] += r["n"]
                continue
            k["due" if r["due"] else "later"] += r["n"]
            if r["waiting_for"]:
                k["waiting"][r["waiting_for"]] = k["waiting"].get(r["waiting_for"], 0) + r["n"]
        return out

