"""Wiring of the images feature: SCP service, echo job, retrieve handler, status."""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..app import App
from ..state import Task
from ..state.kinds import Retrieve
from ..state.names import TaskState
from ..tasks import Fatal
from .echo import EchoMonitor, echo_health, echo_status
from .http_fetch import HttpFetcher
from .move_batch import Batcher
from .retrieve import Retriever, stall_health
from .scp import allowed_calling_aets
from .scp_supervisor import ScpPool
from .spool import Spool
from .wiring import Images, build

log = structlog.get_logger("dicomgate.images")

INCOMING_CLEANUP_EVERY = 600.0
STALE_TEMP_AGE = 3600.0  # a temp file nobody wrote to for this long was left by a crash


def setup(app: App) -> Images:
    cfg = app.config
    images = build(cfg, app.store, app.progress)  # type: ignore[arg-type]
    if allowed_calling_aets(cfg):  # in a child process: receiving gets a core of its own
        scp = ScpPool(cfg, images.spool, app.store)
        app.add_service(scp, health=scp.health)
    pacs, http, retriever = images.pacs, images.http, images.retriever
    if pacs is not None and retriever is not None and cfg.pacs is not None:
        app.every("pacs.echo", cfg.pacs.echo_interval, EchoMonitor(app.store, pacs).run)
        app.add_health("pacs", lambda: "; ".join(filter(None, (
            echo_health(app.store), stall_health(app.store)))) or None)
        # the stall text starts "C-MOVE stalled: ..." (scu.MoveStalled)
        app.lane("retrieve", cfg.pacs.max_associations, note=lambda: stall_health(app.store))
        app.handle(Retrieve, retriever.handle, lane="retrieve")
        retriever.batcher = Batcher(app.store, cfg.pacs, app.pool)
        # added after the Portal AET, so stopped before it: C-MOVEs under way are cancelled
        # and handed back while the Portal AET still answers
        app.add_service(RetrievesStopper(retriever))
    elif http is not None:
        app.lane("retrieve", cfg.tasks.workers)
        app.handle(Retrieve, http_only(http), lane="retrieve")
    spool = images.spool
    app.every("spool.incoming_cleanup", INCOMING_CLEANUP_EVERY,
              lambda: clean_incoming(spool), first_in=INCOMING_CLEANUP_EVERY)
    app.add_status("images", lambda: status(app, spool))
    return images


class RetrievesStopper:
    """A service whose stop() cancels the retrieves under way (see Retriever.stop)."""

    name = "retrieves"

    def __init__(self, retriever: Retriever):
        self.retriever = retriever

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.retriever.stop()


def http_only(http: HttpFetcher):
    def handle(work: Retrieve, task: Task) -> str:
        if not work.image_paths:
            raise Fatal("no [pacs] section, so images come only by HTTP: this exam has no "
                        "imagePath URLs")
        return http.handle(work, task)
    return handle


def status(app: App, spool: Spool) -> dict[str, Any]:
    cfg = app.config
    d = cfg.dicom
    out: dict[str, Any] = {}
    if cfg.pacs is not None:
        out.update(echo_status(app.store))
        out["C-MOVE"] = stall_health(app.store) or "no stall"
        waiting = [t for t in app.store.tasks.list(state=TaskState.PENDING, kind=Retrieve.kind)
                   if t.last_error]
        if waiting:
            out["retrieves waiting"] = (f"{len(waiting)}, latest: "
                                        f"{waiting[0].last_error[:200]}")
    aets = allowed_calling_aets(cfg)
    out["portal AET"] = f"{d.ae_title} on {d.bind}:{d.port}" if aets else (
        "disabled: no calling AE allowed (set pacs.ae_title or dicom.allowed_calling_aets)")
    out["calling AEs accepted"] = ", ".join(aets) or "-"
    out["studies"] = app.store.instances.study_state_counts() or "none"
    out["instances"] = app.store.instances.instance_state_counts() or "none"
    out["quarantined files"] = spool.quarantined()
    out["free space"] = "; ".join(
        f"{what} {path}: {free / 1e6:.0f} MB" for what, path, free in spool.filesystems()) + (
        f" (floor {d.min_free_disk / 1e6:.0f} MB: "
        + ("BELOW, C-STORE refused)" if spool.short_of_space(d.min_free_disk) else "ok)"))
    out["Portal AET rejections (24 h)"] = rejections(app)
    return out


def rejections(app: App) -> str:
    """What the Portal AET rejected lately: a PACS storing from an AE not allowed, or
    offering what we do not accept, shows here before anyone reads a log."""
    seen = app.store.dicom_events.since(time.time() - 86400,
                                        ("association_rejected", "context_rejected"))
    if not seen:
        return "none"
    last = seen[-1]
    return (f"{len(seen)}; last from {last.calling_aet or '?'}: {last.reason} "
            "(dicomgate study show, docs/operations.md 'Retrieve errors')")


def clean_incoming(spool: Spool) -> str:
    """Temp files in spool/.incoming left by a crash or a full disk (the SCP's own are
    removed when it starts; this catches the rest while the daemon runs)."""
    n = spool.clean_stale(STALE_TEMP_AGE)
    if n:
        log.warning("spool.stale_removed", files=n, reason="temp files untouched for "
                    f"{STALE_TEMP_AGE:.0f}s (a crash or a full disk interrupted them)")
    return f"{n} stale temp files removed"
