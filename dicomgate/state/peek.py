"""The schema version of a store file, read without opening it for writing.

`dicomgate version` runs as root too (the installer): any open of a WAL store, even
read-only, creates its -wal/-shm files when they are missing, and root-owned ones would stop
the service user's daemon from writing. Without a -wal file nobody is writing and every page
is in the main file, so it is read as immutable (no side file at all); with one, the side
files exist already and a read-only open adds none.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def store_schema_version(path: Path) -> int | None:
    """The highest applied migration of the store at `path`; None when there is no store
    (or it cannot be read: `dicomgate status` says why)."""
    if not path.is_file():
        return None
    quiet = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro{quiet}", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = c.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.Error:
        return None
    finally:
        c.close()
    return int(row[0] or 0)
