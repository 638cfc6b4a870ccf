"""One wiring of the images feature, used by the daemon (feature.py) and the CLI
(`dicomgate pull` without a daemon): the same spool, disk floor, HTTP image mode, hospital
scoping and retriever settings in both."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..state import Store
from .http_fetch import HttpFetcher
from .ingest import Ingest
from .retrieve import MoveProgress, Retriever
from .scp import StorageSCP
from .scu import PacsClient
from .spool import Spool


@dataclass
class Images:
    config: Config
    spool: Spool
    ingest: Ingest
    pacs: PacsClient | None  # None without [pacs]
    http: HttpFetcher | None  # None unless [images] source = "http"
    retriever: Retriever | None  # None without [pacs]

    def portal_aet(self) -> StorageSCP:
        """A Portal AET in this process (the CLI's, when no daemon holds the port)."""
        return StorageSCP(self.config, self.ingest)


def build(config: Config, store: Store, progress: MoveProgress | None = None) -> Images:
    spool = Spool(config.gateway.state_dir)
    uploads = config.upstream is not None  # else no upload task: nobody would run it
    ingest = Ingest(store, spool, config.dicom.min_free_disk, queue_uploads=uploads)
    pacs = PacsClient(config.dicom, config.pacs) if config.pacs is not None else None
    http = None
    if config.images is not None and config.images.source == "http":
        http = HttpFetcher(store, ingest, config.images.http_timeout)
    retriever = None
    if pacs is not None:
        retriever = Retriever(store, pacs, http.handle if http else None, progress=progress,
                              queue_uploads=uploads, room=ingest.short_of_space,
                              pacs_down_wait=config.tasks.backoff_max,
                              hospitals=config.gateway.served_hospitals)
    return Images(config, spool, ingest, pacs, http, retriever)
