"""Studies and the instances in the spool: what arrived, where it is, how far it got."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .db import Database
from .names import InstanceState, StudyState, declared


@dataclass(frozen=True)
class InstanceRow:
    sop_uid: str
    study_uid: str
    series_uid: str | None
    sop_class_uid: str | None
    transfer_syntax: str | None
    path: str | None
    size: int | None
    sha256: str | None
    state: str
    error: str | None
    source: str | None
    received_at: float
    updated_at: float
    delivered_at: float | None
    node: str | None = None  # nodes sharing a store: whose spool holds `path`

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> InstanceRow:
        return cls(**dict(row))


@dataclass(frozen=True)
class Holdings:
    exam_id: int | None
    study_uids: list[str]
    instances: list[dict[str, Any]]  # sop_uid, study_uid, series_uid, path (not yet deleted)


# States in which the cloud may hold a copy: new content with the same UID must replace it.
CLOUD_MAY_HOLD = ("uploaded", "delivered", "purged")


class InstanceStore:
    def __init__(self, db: Database):
        self.db = db

    # -- replaced content -----------------------------------------------------------------
    def superseded(self, sop_uids: list[str]) -> dict[str, str]:
        """{sop_uid: sha256 of the older version the cloud may still hold}."""
        out: dict[str, str] = {}
        for i in range(0, len(sop_uids), 500):
            part = sop_uids[i:i + 500]
            rows = self.db.query(f"SELECT sop_uid, old_sha256 FROM superseded WHERE sop_uid "
                                 f"IN ({','.join('?' * len(part))})", tuple(part))
            out.update({r["sop_uid"]: r["old_sha256"] for r in rows})
        return out

    def replaced_in_cloud(self, sop_uid: str) -> None:
        """The cloud holds the current version now."""
        with self.db.tx() as c:
            c.execute("DELETE FROM superseded WHERE sop_uid=?", (sop_uid,))

    # -- instances ------------------------------------------------------------------------
    def record(self, *, sop_uid: str, study_uid: str, series_uid: str | None,
               sop_class_uid: str | None, transfer_syntax: str | None, path: str, size: int,
               sha256: str, source: str) -> str:
        """Record a stored instance: 'new', 'same' (identical bytes) or 'replaced'."""
        with self.db.tx() as conn:
            return self._record(conn, sop_uid, study_uid, series_uid, sop_class_uid,
                                transfer_syntax, path, size, sha256, source)

    def _record(self, conn: sqlite3.Connection, sop_uid: str, study_uid: str,
                series_uid: str | None, sop_class_uid: str | None, transfer_syntax: str | None,
                path: str, size: int, sha256: str, source: str) -> str:
        now = time.time()
        old = conn.execute("SELECT sha256, state FROM instances WHERE sop_uid=?",
                           (sop_uid,)).fetchone()
        if old is not None and old["sha256"] == sha256 and old["state"] not in (
                "purged", "deleted"):
            return "same"
        if old is not None and old["sha256"] != sha256 and old["state"] in CLOUD_MAY_HOLD:
            # the first replaced version is the one the cloud may hold: keep it
            conn.execute("INSERT INTO superseded (sop_uid, old_sha256, at) VALUES (?, ?, ?) "
                         "ON CONFLICT (sop_uid) DO NOTHING", (sop_uid, old["sha256"], now))
            # the study is not delivered until the cloud holds the new content too
            conn.execute("UPDATE studies SET state='complete', updated_at=? "
                         "WHERE study_uid=? AND state='delivered'", (now, study_uid))
        conn.execute(
            "INSERT INTO instances (sop_uid, study_uid, series_uid, sop_class_uid, "
            "transfer_syntax, path, size, sha256, state, error, source, received_at, "
            "updated_at, delivered_at, node) "
            "VALUES (?,?,?,?,?,?,?,?,'received',NULL,?,?,?,NULL,?) "
            "ON CONFLICT (sop_uid) DO UPDATE SET study_uid=excluded.study_uid, node=excluded.node, "
            "series_uid=excluded.series_uid, sop_class_uid=excluded.sop_class_uid, "
            "transfer_syntax=excluded.transfer_syntax, path=excluded.path, size=excluded.size, "
            "sha256=excluded.sha256, state='received', error=NULL, source=excluded.source, "
            "updated_at=excluded.updated_at, delivered_at=NULL",
            (sop_uid, study_uid, series_uid, sop_class_uid, transfer_syntax, path, size, sha256,
             source, now, now, self.db.node))
        self.ensure_study(study_uid)
        return "new" if old is None else "replaced"

    def get(self, sop_uid: str) -> InstanceRow | None:
        row = self.db.one("SELECT * FROM instances WHERE sop_uid=?", (sop_uid,))
        return InstanceRow.from_row(row) if row else None

    def get_path(self, sop_uid: str) -> str | None:
        row = self.db.one("SELECT path FROM instances WHERE sop_uid=?", (sop_uid,))
        return row[0] if row else None

    def of_study(self, study_uid: str, states: tuple[str, ...] | None = None) -> list[InstanceRow]:
        sql = "SELECT * FROM instances WHERE study_uid=?"
        params: list[Any] = [study_uid]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        rows = self.db.query(sql + " ORDER BY series_uid, sop_uid", tuple(params))
        return [InstanceRow.from_row(r) for r in rows]

    def sop_uids(self, study_uid: str, present_only: bool = True) -> set[str]:
        sql = "SELECT sop_uid FROM instances WHERE study_uid=?"
        if present_only:
            sql += " AND state NOT IN ('purged', 'deleted')"
        return {r[0] for r in self.db.query(sql, (study_uid,))}

    def set_state(self, sop_uids: list[str], state: InstanceState | str,
                  error: str | None = None) -> int:
        state = declared(InstanceState, state)
        if not sop_uids:
            return 0
        now = time.time()
        delivered = now if state == "delivered" else None
        sql = (f"UPDATE instances SET state=?, error=?, updated_at=?, "
               f"delivered_at=COALESCE(?, delivered_at) "
               f"WHERE sop_uid IN ({','.join('?' * len(sop_uids))})")
        params = (state, error, now, delivered, *sop_uids)
        with self.db.tx() as c:
            return c.execute(sql, params).rowcount

    # -- studies --------------------------------------------------------------------------
    def ensure_study(self, study_uid: str, *, accession_no: str | None = None,
                     exam_id: int | None = None) -> None:
        sql = ("INSERT INTO studies (study_uid, accession_no, exam_id, state, created_at, "
               "updated_at) VALUES (?, ?, ?, 'new', ?, ?) ON CONFLICT (study_uid) DO UPDATE SET "
               "accession_no=COALESCE(excluded.accession_no, studies.accession_no), "
               "exam_id=COALESCE(excluded.exam_id, studies.exam_id)")
        now = time.time()
        params = (study_uid, accession_no, exam_id, now, now)
        with self.db.tx() as c:
            c.execute(sql, params)

    def study(self, study_uid: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM studies WHERE study_uid=?", (study_uid,))
        if row is None:
            return None
        d = dict(row)
        d["detail"] = study_detail(d["detail"])
        return d

    def studies_of_accession(self, accession_no: str) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT study_uid FROM studies WHERE accession_no=? ORDER BY created_at",
            (accession_no,))]

    def set_study(self, study_uid: str, *, state: StudyState | str | None = None,
                  expected_count: int | None = None,
                  detail: dict[str, Any] | None = None) -> None:
        sets, params = ["updated_at=?"], [time.time()]
        if state is not None:
            sets.append("state=?")
            params.append(declared(StudyState, state))
        if expected_count is not None:
            sets.append("expected_count=?")
            params.append(expected_count)
        if detail is not None:
            sets.append("detail=?")
            params.append(json.dumps(detail, ensure_ascii=False))
        sql = f"UPDATE studies SET {', '.join(sets)} WHERE study_uid=?"
        with self.db.tx() as c:
            c.execute(sql, (*params, study_uid))

    def study_counts(self, study_uid: str) -> dict[str, int]:
        rows = self.db.query("SELECT state, COUNT(*) n FROM instances WHERE study_uid=? "
                             "GROUP BY state", (study_uid,))
        return {r["state"]: r["n"] for r in rows}

    def study_state_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self.db.query(
            "SELECT state, COUNT(*) n FROM studies GROUP BY state ORDER BY state")}

    def instance_state_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self.db.query(
            "SELECT state, COUNT(*) n FROM instances GROUP BY state ORDER BY state")}

    # -- delivery outcomes (upstream: rejections to retry, retention) ---------------------
    def unreject(self, study_uid: str | None = None) -> list[str]:
        """Give rejected instances another chance (after the cloud side was fixed)."""
        sql = "UPDATE instances SET state='received', error=NULL, updated_at=? WHERE " \
              "state='rejected'"
        params: list[Any] = [time.time()]
        if study_uid:
            sql += " AND study_uid=?"
            params.append(study_uid)
        with self.db.tx() as c:
            rows = c.execute(sql + " RETURNING study_uid", tuple(params)).fetchall()
        return sorted({r[0] for r in rows})

    def mark_purged(self, sop_uids: list[str]) -> set[str]:
        """Only delivered rows turn purged (a row that changed meanwhile is left alone);
        returns the ones that did."""
        done: set[str] = set()
        now = time.time()
        with self.db.tx() as c:
            for chunk in (sop_uids[i:i + 500] for i in range(0, len(sop_uids), 500)):
                rows = c.execute(
                    f"UPDATE instances SET state='purged', updated_at=? WHERE (state='delivered' "
                    f"OR study_uid IN (SELECT study_uid FROM studies WHERE state='withdrawn')) "
                    f"AND sop_uid IN ({','.join('?' * len(chunk))}) RETURNING sop_uid",
                    (now, *chunk)).fetchall()
                done.update(r[0] for r in rows)
        return done

    def studies_of_exam(self, exam_id: int | None, accession_no: str) -> list[str]:
        rows = self.db.query("SELECT study_uid FROM studies WHERE exam_id=? OR accession_no=? "
                             "ORDER BY created_at", (exam_id, accession_no))
        return [r[0] for r in rows]

    # -- deletions at the PACS (spec 4.5) --------------------------------------------------
    def holdings(self, exam_id: int | None, exam_study_uid: str | None, accession_no: str,
                 unlinked_by_accession: bool = True) -> Holdings:
        """An exam's studies (by exam link, exam study UID, or accession number for studies
        linked to no exam) and their instances not yet marked deleted. Accession numbers are
        unique only within a hospital: a study linked to another exam is never matched by
        accession, and unlinked ones only when `unlinked_by_accession` (they were received
        for the gateway's own hospital)."""
        rows = self.db.query(
            "SELECT study_uid FROM studies WHERE (exam_id IS NOT NULL AND exam_id=?) "
            "OR study_uid=? OR (accession_no=? AND exam_id IS NULL AND ?=1) ORDER BY study_uid",
            (exam_id, exam_study_uid, accession_no, int(unlinked_by_accession)))
        uids = [r["study_uid"] for r in rows]
        if exam_study_uid and exam_study_uid not in uids:
            uids.append(exam_study_uid)
        instances: list[dict[str, Any]] = []
        if uids:
            marks = ",".join("?" * len(uids))
            instances = [dict(r) for r in self.db.query(
                f"SELECT sop_uid, study_uid, series_uid, path FROM instances "
                f"WHERE study_uid IN ({marks}) AND state<>'deleted' ORDER BY sop_uid",
                tuple(uids))]
        return Holdings(exam_id, uids, instances)

    def mark_deleted(self, holdings: Holdings) -> None:
        with self.db.tx() as conn:
            self._mark_deleted(conn, holdings)

    @staticmethod
    def _mark_deleted(conn: sqlite3.Connection, holdings: Holdings) -> None:
        now = time.time()
        conn.executemany("UPDATE instances SET state='deleted', updated_at=? WHERE sop_uid=?",
                         [(now, i["sop_uid"]) for i in holdings.instances])
        # detail is a JSON object, as every other writer and reader of the column has it
        note = json.dumps({"note": "images deleted at the PACS; re-check queued",
                           "deleted_at": now})
        conn.executemany("UPDATE studies SET state='deleted', detail=?, updated_at=? "
                         "WHERE study_uid=?", [(note, now, uid) for uid in holdings.study_uids])

    def still_deleted(self, sop_uids: list[str]) -> list[dict[str, Any]]:
        """Instances of a past deletion still marked deleted (not re-retrieved since)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(sop_uids), 500):
            chunk = sop_uids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += [dict(r) for r in self.db.query(
                f"SELECT sop_uid, study_uid, series_uid, path FROM instances "
                f"WHERE sop_uid IN ({marks}) AND state='deleted'", tuple(chunk))]
        return out

    # -- lookup (spec 4.4.3.2) -------------------------------------------------------------
    def known_studies(self, study_uids: list[str]) -> set[str]:
        """Which of these studies this gateway holds itself (used to drop our own studies
        from cross-hospital lookups)."""
        out: set[str] = set()
        for i in range(0, len(study_uids), 500):
            chunk = study_uids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out |= {r[0] for r in self.db.query(
                f"SELECT study_uid FROM studies WHERE study_uid IN ({marks})", tuple(chunk))}
        return out


def study_detail(text: str | None) -> dict[str, Any] | None:
    """studies.detail as an object. Rows written before it was always JSON hold a plain note
    (e.g. after a deletion): read as {"note": text}, never an error."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"note": text}
    return value if isinstance(value, dict) else {"note": value}
