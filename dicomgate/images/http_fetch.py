"""HTTP image mode (spec 4.2 mode 2): GET each image URL of an exam, streamed to the spool.

Each download must be a DICOM Part 10 file; anything else goes to quarantine with the
reason, and the task says so. Network trouble and server errors are retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import structlog

from ..state import Store, Task
from ..state.kinds import Retrieve, Upload
from ..state.names import StudyState
from ..tasks import Fatal, RetryLater, WaitFor
from .ingest import Ingest, Malformed, Stored
from .move_outcome import DISK_RECHECK
from .spool import CHUNK

log = structlog.get_logger("dicomgate.images.http")


class NotDicom(Exception):
    pass


def image_urls(value: Any) -> list[str]:
    """`image_paths` as a list, or an imagePath string with `;`-separated URLs."""
    items = value if isinstance(value, list) else str(value or "").split(";")
    return [u.strip() for u in items if u and u.strip()]


class HttpFetcher:
    def __init__(self, store: Store, ingest: Ingest, timeout: float):
        self.store = store
        self.ingest = ingest
        self.timeout = timeout
        self.session = requests.Session()

    def handle(self, work: Retrieve, _task: Task) -> str:
        urls = image_urls(list(work.image_paths or ()))
        if not urls:
            raise Fatal("image_paths is empty: expected one or more http(s) URLs")
        stored: list[Stored] = []
        refused: list[str] = []
        for url in urls:
            try:
                stored.append(self.fetch(url))
            except NotDicom as exc:
                refused.append(f"{url}: {exc}")
        studies = sorted({s.identity.study_uid for s in stored})
        for uid in studies:
            self._settle(uid, work, complete=not refused)
        if refused:
            raise Fatal(f"{len(refused)} of {len(urls)} image URLs gave no DICOM Part 10 file "
                        f"(kept in quarantine/ with the reason): {'; '.join(refused[:5])}")
        new = sum(1 for s in stored if s.outcome != "same")
        return f"{len(stored)} files from {len(urls)} URLs ({new} new), studies {studies}"

    def _settle(self, study_uid: str, work: Retrieve, complete: bool) -> None:
        inst = self.store.instances
        inst.ensure_study(study_uid, accession_no=work.accession_no, exam_id=work.exam_id)
        count = len(inst.sop_uids(study_uid))
        with self.store.transaction():
            state = StudyState.COMPLETE if complete else StudyState.INCOMPLETE
            inst.set_study(study_uid, state=state, expected_count=count)
            if complete and self.ingest.queue_uploads:
                self.store.tasks.enqueue(Upload(study_uid), reopen=True,
                                         study_uid=study_uid)
        if complete:
            log.info("study.complete", study_uid=study_uid, instances=count, source="http")

    def fetch(self, url: str) -> Stored:
        if not url.lower().startswith(("http://", "https://")):
            raise NotDicom(self._quarantine(None, url, "not an http(s) URL"))
        short = self.ingest.short_of_space()
        if short:
            raise WaitFor(f"{short}; {url} will be fetched when space returns", "disk space",
                          after=DISK_RECHECK)
        temp = self.ingest.spool.temp_path()
        try:
            size, sha = self._download(url, temp)
            with open(temp, "rb") as f:
                head = f.read(132)
            if len(head) < 132 or head[128:132] != b"DICM":
                raise NotDicom(self._quarantine(temp, url, "not DICOM Part 10: no 'DICM' "
                                                           "prefix at byte 128"))
            try:
                return self.ingest.from_file(temp, size, sha, source=f"http:{url}")
            except Malformed as exc:
                raise NotDicom(self._quarantine(temp, url, str(exc))) from None
        finally:
            temp.unlink(missing_ok=True)

    def _download(self, url: str, temp: Path) -> tuple[int, str]:
        try:
            with self.session.get(url, stream=True, timeout=self.timeout) as r:
                if r.status_code >= 500 or r.status_code in (404, 408, 429):
                    raise RetryLater(f"GET {url}: HTTP {r.status_code}; will try again")
                if r.status_code >= 400:
                    raise Fatal(f"GET {url}: HTTP {r.status_code} {r.reason}: check the "
                                "imagePath the PACS gives and that this host may read it")
                return self.ingest.spool.write(temp, r.iter_content(CHUNK))
        except requests.RequestException as exc:
            raise RetryLater(f"GET {url} failed: {type(exc).__name__}: {exc}") from None

    def _quarantine(self, temp: Path | None, url: str, reason: str) -> str:
        kept = self.ingest.spool.quarantine(temp, reason, {"url": url},
                                            data=None if temp else b"")
        log.error("image.quarantined", url=url, reason=reason, file=str(kept))
        return reason
