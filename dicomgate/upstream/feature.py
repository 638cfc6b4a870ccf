"""Wire the upstream feature: task handlers, retention and probe jobs, status section."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ..app import ActionError, App
from ..state import Store
from ..state.kinds import Deletion, PushReport, Upload, Withdraw
from .dicomweb import DicomWebClient
from .event_tasks import EventHandlers
from .replace import Replacer
from .rest import RestClient
from .retention import Retention
from .status import UpstreamStatus
from .stow_batches import Uploader
from .transport import Reachability, Transport
from .upload_task import UploadHandler

# Cloud outages can last days: transient failures keep retrying (backoff capped by
# tasks.backoff_max) instead of going dead after tasks.max_attempts.
MAX_ATTEMPTS = 10_000
log = structlog.get_logger("dicomgate.upstream")
RETENTION_EVERY = 600.0
CATCH_UP_EVERY = 3600.0  # first run at start
PROBE_EVERY = 60.0


@dataclass
class Upstream:
    uploader: Uploader
    upload: UploadHandler
    events: EventHandlers
    retention: Retention
    status: UpstreamStatus
    name: str = "upstream uploader"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.uploader.close()


def queue_waiting_uploads(store: Store) -> int:
    """Images received while [upstream] was off (no upload task was queued for them then)
    are queued for upload now."""
    uids = store.delivery.studies_awaiting_upload()
    for uid in uids:
        store.tasks.enqueue(Upload(uid), reopen=True, study_uid=uid)
    if uids:
        log.info("upstream.uploads_queued", studies=len(uids), reason="received while no "
                 "upload was queued (e.g. before [upstream] was configured)")
    return len(uids)


def setup(app: App) -> Upstream | None:
    """Register upstream's handlers and jobs; the objects are returned (`app.features`)."""
    cfg = app.config.upstream
    if cfg is None:
        return None
    store = app.store
    reach = Reachability(store)
    transport = Transport(cfg, app.config.gateway.hospital_id, reach)
    dicomweb = DicomWebClient(transport, cfg.dicomweb_url)
    rest = RestClient(transport, cfg.api_url)
    uploader = Uploader(store, dicomweb, cfg, progress=app.progress)
    up = Upstream(
        uploader=uploader,
        upload=UploadHandler(store, dicomweb, uploader, cfg,
                             Replacer(store, dicomweb, rest, app.config.gateway.hospital_id),
                             pool=app.pool, stopping=app.pool.stopping.is_set),
        events=EventHandlers(store, rest, app.config.gateway.hospital_id),
        retention=Retention(store, app.config.gateway.spool_dir, cfg.retention),
        status=UpstreamStatus(store, reach, dicomweb, rest, wake=app.pool.wake),
    )
    app.lane("upload", cfg.concurrency)  # never behind hung C-MOVEs; reports not behind it
    app.handle(Upload, up.upload, max_attempts=MAX_ATTEMPTS, lane="upload")
    app.handle(PushReport, up.events.push_report, max_attempts=MAX_ATTEMPTS)
    app.handle(Withdraw, up.events.withdraw, max_attempts=MAX_ATTEMPTS)
    app.handle(Deletion, up.events.deletion, max_attempts=MAX_ATTEMPTS)
    app.every("upstream.retention", RETENTION_EVERY, up.retention.run, first_in=60.0)
    app.every("upstream.probe", PROBE_EVERY, up.status.probe)
    app.every("upstream.catch_up", CATCH_UP_EVERY, lambda: queue_waiting_uploads(store))
    app.add_service(up, health=up.status.health)
    app.add_status("upstream", up.status.section)
    app.add_action("upstream.resend_rejected", lambda study_uid: _resend(app, study_uid))
    return up


def requeue_rejected(store: Store, study_uid: str | None) -> list[str]:
    """Instances the cloud rejected get another chance (after the cloud side was fixed):
    back to `received`, their studies' uploads queued. `push --retry-rejected` and the
    console's button both come here."""
    studies = store.instances.unreject(study_uid)
    for uid in studies:
        store.tasks.enqueue(Upload(uid), reopen=True, study_uid=uid)
    return studies


def _resend(app: App, study_uid: str) -> str:
    studies = requeue_rejected(app.store, study_uid)
    if not studies:
        raise ActionError(f"study {study_uid} has no instance the cloud rejected")
    app.pool.wake()
    return f"rejected instances of study {study_uid} queued for upload again"
