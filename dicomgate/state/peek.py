"""The schema version of a store file, read without opening it for writing.

`dicomgate version` may run as root next to the service user's store: a normal open would
create root-owned -wal/-shm files and could change nothing else, so this reads read-only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def store_schema_version(path: Path) -> int | None:
    """The highest applied migration of the store at `path`; None when there is no store
    (or it cannot be read: `dicomgate status` says why)."""
    if not path.is_file():
        return None
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = c.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.Error:
        return None
    finally:
        c.close()
    return int(row[0] or 0)
