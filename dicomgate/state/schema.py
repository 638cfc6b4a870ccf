"""The schema version: what this code knows, what a store holds, and the one way to change it.

Only a process that holds the daemon lock migrates (the daemon at start, `dicomgate
migrate`): a command typed next to a running daemon must never change the schema under
it. Every other process opens the store with `require_current` and refuses a schema it
does not know, older or newer, with one line saying what to run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .db import Database, StateError, secure_dir
from .migrations import all_migrations

KNOWN: tuple[tuple[int, str, str], ...] = tuple(all_migrations())
KNOWN_VERSIONS = frozenset(v for v, _, _ in KNOWN)
SCHEMA_VERSION: int = max(KNOWN_VERSIONS)  # the schema this code writes and reads


class NoState(StateError):
    """The state store does not exist yet (nothing has run on this state dir)."""


class SchemaTooOld(StateError):
    """The store misses migrations this code needs: `dicomgate migrate` brings it up."""


class SchemaTooNew(StateError):
    """The store was written by a newer dicomgate: this code must not touch it."""


@dataclass(frozen=True)
class SchemaStatus:
    applied: frozenset[int]

    @property
    def version(self) -> int:
        """The store's schema version: its highest applied migration (0: empty)."""
        return max(self.applied, default=0)

    @property
    def missing(self) -> list[tuple[int, str]]:
        return [(v, name) for v, name, _ in KNOWN if v not in self.applied]

    @property
    def unknown(self) -> list[int]:
        return sorted(self.applied - KNOWN_VERSIONS)


@dataclass(frozen=True)
class MigrationReport:
    from_version: int
    to_version: int
    applied: tuple[str, ...]  # "580 (console)", in order
    backup: Path | None  # None: nothing to back up (a new store) or nothing applied


def status(db: Database) -> SchemaStatus:
    if not db.has_table("schema_migrations"):
        return SchemaStatus(frozenset())
    return SchemaStatus(frozenset(r[0] for r in db.query("SELECT version FROM "
                                                         "schema_migrations")))


def too_new(found: SchemaStatus) -> SchemaTooNew:
    return SchemaTooNew(f"state store written by a newer dicomgate (schema {found.version}, "
                        f"migrations {found.unknown} unknown to this version, which knows "
                        f"schema {SCHEMA_VERSION}): install that version or restore a backup")


def require_current(db: Database) -> SchemaStatus:
    """The store's schema, when it is exactly the one this code knows; else why not."""
    found = status(db)
    if not found.applied:
        where = db.path.parent if db.engine == "sqlite" else db.where
        raise NoState(f"no state yet in {where}: the daemon creates it when it "
                      "starts (systemctl start dicomgate), or run `dicomgate migrate`")
    if found.unknown:
        raise too_new(found)
    if found.missing:
        raise SchemaTooOld(f"state store has schema {found.version}, this dicomgate needs "
                           f"{SCHEMA_VERSION}: run `dicomgate migrate` (it backs the store "
                           "up first)")
    return found


def migrate(db: Database, backup_dir: Path | None) -> MigrationReport:
    """Apply every known migration the store lacks, after a consistent copy of a non-empty
    store into `backup_dir` (None: no copy; tests). The caller holds the daemon lock."""
    found = status(db)
    if found.unknown:
        raise too_new(found)
    if not found.missing:
        return MigrationReport(found.version, found.version, (), None)
    # PostgreSQL: its own backups (pg_dump, replication) are the operator's; see operations.md
    copy = (backup(db, backup_dir, found.version)
            if backup_dir and found.applied and db.engine == "sqlite" else None)
    with db.tx() as c:
        c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                  "name TEXT NOT NULL, applied_at REAL NOT NULL)".replace(
                      "REAL", "DOUBLE PRECISION" if db.engine != "sqlite" else "REAL"))
    applied: list[str] = []
    for version, name, sql in KNOWN:
        if version in found.applied:
            continue
        try:
            with db.tx() as c:
                # Re-checked inside the write lock: a second migrator can never re-apply one.
                if c.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                             (version,)).fetchone() is None:
                    db.run_script(c, sql)
                    c.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                              (version, name, time.time()))
                    applied.append(f"{version} ({name})")
        except StateError:
            raise
        except Exception as exc:  # the engine's error: sqlite3.Error, psycopg.Error
            raise StateError(f"migration {version} ({name}) failed: {exc}; the store is "
                             f"left at the last migration that succeeded"
                             + (f", the copy from before is {copy}" if copy else "")) from None
    return MigrationReport(found.version, status(db).version, tuple(applied), copy)


def backup(db: Database, backup_dir: Path, from_version: int) -> Path:
    """A consistent copy (SQLite online backup: other readers and writers may carry on)
    as `state-schema<FROM>-<UTC time>.sqlite3`, readable by the service user only."""
    secure_dir(backup_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 100):
        dest = backup_dir / f"state-schema{from_version}-{stamp}{'' if n == 1 else f'-{n}'}.sqlite3"
        try:
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            continue
    else:
        raise StateError(f"cannot name a backup in {backup_dir}: too many from {stamp}")
    target = sqlite3.connect(dest)
    try:
        db.conn().backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        target.close()
        dest.unlink(missing_ok=True)
        raise StateError(f"cannot back up the state store to {dest}: {exc}; nothing was "
                         "migrated") from None
    target.close()
    os.chmod(dest, 0o600)
    return dest


def split_statements(sql: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner `;`)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
