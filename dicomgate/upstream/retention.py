"""Spool retention: a file goes only `retention` after its delivery was confirmed, or after
its study was withdrawn (the exam refunded)."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from ..files import sha256_file
from ..spool_layout import inside, remove_instance
from ..state import Store

log = structlog.get_logger("dicomgate.upstream")


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)[1]
    except FileNotFoundError:
        return None


class Retention:
    def __init__(self, store: Store, spool_dir: Path, retention: float):
        self.store = store
        self.spool_dir = spool_dir
        self.retention = retention

    def run(self, now: float | None = None, limit: int = 5000) -> str:
        cutoff = (time.time() if now is None else now) - self.retention
        rows = self.store.delivery.purgeable(cutoff, limit)
        if not rows:
            return "nothing to purge"
        # Mark first (only rows still delivered), then remove: a crash in between leaves
        # a purged row whose file is removed by nobody, never a file lost before delivery.
        marked = self.store.instances.mark_purged([r["sop_uid"] for r in rows])
        n = len(marked)
        freed, kept = 0, 0
        for r in rows:
            if r["sop_uid"] not in marked:
                continue
            path = Path(r["path"])
            if not inside(path, self.spool_dir):
                kept += 1
                log.error("retention.outside_spool", sop_uid=r["sop_uid"], path=str(path))
                continue
            digest = _sha256(path)
            if digest is None:
                continue
            if digest != r["sha256"]:  # new content of the same SOP arrived meanwhile
                kept += 1
                continue
            remove_instance(path, self.spool_dir)
            freed += r["size"] or 0
        log.info("retention.purged", instances=n, bytes=freed, kept=kept)
        return f"purged {n} instance(s), {freed / 1e6:.1f} MB freed"
