"""Where instances live under the state directory, and how one leaves it.

`<state_dir>/spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`; what could not be stored
goes to `<state_dir>/quarantine/`. Images writes the spool, upstream purges it after delivery,
the shim removes an exam's files on a deletion request: all three use this one layout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def spool_dir(state_dir: Path) -> Path:
    return state_dir / "spool"


def quarantine_dir(state_dir: Path) -> Path:
    return state_dir / "quarantine"


def instance_path(spool: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    return spool / study_uid / series_uid / f"{sop_uid}.dcm"


def inside(path: Path, spool: Path) -> bool:
    """True when `path` (links resolved) lies below the spool: nothing else is ever removed."""
    return path.resolve().is_relative_to(spool.resolve())


def remove_instance(path: Path, spool: Path) -> bool:
    """Unlink a spool file, then its emptied series and study folders (never the spool root).

    False when the file was already gone; other OSErrors go to the caller."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    root = spool.resolve()
    folder = path.resolve().parent
    while folder != root and root in folder.parents:
        try:
            os.rmdir(folder)  # only when empty
        except OSError:  # not empty, or gone
            break
        folder = folder.parent
    return True


def remove_instances(spool: Path, rows: Iterable[Mapping[str, Any]], log: Any,
                     event: str) -> int:
    """Remove the files of instance rows (sop_uid, study_uid, series_uid, path) from the
    spool, never a path outside it; problems are logged as `<event>.path_outside_spool`
    and `<event>.unlink_failed`. The number of files removed."""
    removed = 0
    for row in rows:
        path = Path(row["path"]) if row.get("path") else instance_path(
            spool, row["study_uid"], row.get("series_uid") or "", row["sop_uid"])
        if not inside(path, spool):  # never delete outside the spool
            log.warning(f"{event}.path_outside_spool", sop_uid=row["sop_uid"])
            continue
        try:
            removed += remove_instance(path, spool)
        except OSError as exc:
            log.error(f"{event}.unlink_failed", sop_uid=row["sop_uid"], error=str(exc))
    return removed
