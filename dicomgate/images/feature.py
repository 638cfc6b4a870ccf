"""Wiring of the images feature: SCP service, echo job, retrieve handler, status."""

from __future__ import annotations

from typing import Any

from ..app import App
from ..state.kinds import Retrieve
from ..tasks import Fatal
from .echo import EchoMonitor, echo_health, echo_status
from .http_fetch import HttpFetcher
from .ingest import Ingest
from .retrieve import Retriever
from .scp import allowed_calling_aets
from .scp_supervisor import ScpSupervisor
from .scu import PacsClient
from .spool import Spool


def setup(app: App) -> None:
    cfg = app.config
    spool = Spool(cfg.gateway.state_dir)
    ingest = Ingest(app.store, spool, cfg.dicom.min_free_disk)
    if allowed_calling_aets(cfg):  # in a child process: receiving gets a core of its own
        scp = ScpSupervisor(cfg, spool)
        app.add_service(scp, health=scp.health)
    pacs = PacsClient(cfg.dicom, cfg.pacs) if cfg.pacs is not None else None
    http = None
    if cfg.images is not None and cfg.images.source == "http":
        http = HttpFetcher(app.store, ingest, cfg.images.http_timeout)
    if pacs is not None:
        app.every("pacs.echo", cfg.pacs.echo_interval, EchoMonitor(app.store, pacs).run)
        app.add_health("pacs", lambda: echo_health(app.store))
        app.handle(Retrieve, Retriever(app.store, pacs, http.handle if http else None).handle)
    elif http is not None:
        app.handle(Retrieve, http_only(http))
    app.add_status("images", lambda: status(app, spool))


def http_only(http: HttpFetcher):
    def handle(task):
        if not task.payload.get("image_paths"):
            raise Fatal("no [pacs] section, so images come only by HTTP: this exam has no "
                        "imagePath URLs")
        return http.handle(task)
    return handle


def status(app: App, spool: Spool) -> dict[str, Any]:
    cfg = app.config
    d = cfg.dicom
    out: dict[str, Any] = {}
    if cfg.pacs is not None:
        out.update(echo_status(app.store))
    aets = allowed_calling_aets(cfg)
    out["portal AET"] = f"{d.ae_title} on {d.bind}:{d.port}" if aets else (
        "disabled: no calling AE allowed (set pacs.ae_title or dicom.allowed_calling_aets)")
    out["calling AEs accepted"] = ", ".join(aets) or "-"
    out["studies"] = app.store.instances.study_state_counts() or "none"
    out["instances"] = app.store.instances.instance_state_counts() or "none"
    out["quarantined files"] = spool.quarantined()
    return out
