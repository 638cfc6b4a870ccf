"""The `retrieve` task: find what the PACS holds for a study, C-MOVE it to our Portal AET,
verify every instance is in the spool, repair what is missing, then mark it complete.

Idempotent by design: run again (report re-audited, `dicomgate pull`), it fetches only
the instances the spool lacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ..state import Store, Task
from ..state.kinds import Upload
from ..tasks import Fatal, RetryLater
from .scu import PacsClient, PacsRefused, PacsUnavailable

log = structlog.get_logger("dicomgate.images.retrieve")

PRESENT_STATES = ("uploaded", "delivered", "purged")  # left the spool on purpose
IMAGE_MOVE_BATCH = 200  # SOP Instance UIDs per image-level C-MOVE

# Told as the PACS reports C-MOVE sub-operations: (study_uid, instances held, expected).
MoveProgress = Callable[[str, int, int], None]


def present_sop_uids(store: Store, study_uid: str) -> set[str]:
    """Instances we hold or have delivered: a 'received' row counts only if its file is
    still there with its recorded size (an operator may have cleaned the spool; a power
    loss may have truncated a file)."""
    out = set()
    for row in store.instances.of_study(study_uid):
        if row.state in PRESENT_STATES:
            out.add(row.sop_uid)
        elif row.state in ("received", "rejected") and row.path and _size(row.path) == row.size:
            out.add(row.sop_uid)
    return out


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class Retriever:
    def __init__(self, store: Store, pacs: PacsClient,
                 fetch_http: Callable[[Task], str] | None = None,
                 progress: MoveProgress | None = None):
        self.store = store
        self.pacs = pacs
        self.fetch_http = fetch_http
        self.progress = progress

    # -- task handler ---------------------------------------------------------------------
    def handle(self, task: Task) -> str:
        p = task.payload
        if p.get("image_paths"):
            if self.fetch_http is None:
                raise Fatal("payload has image_paths but HTTP image mode is not configured "
                            '(set [images] source = "http")')
            return self.fetch_http(task)
        try:
            return self.run(study_uid=p.get("study_uid"), accession_no=p.get("accession_no"),
                            exam_id=p.get("exam_id"))
        except PacsUnavailable as exc:
            raise RetryLater(str(exc)) from None
        except PacsRefused as exc:
            raise Fatal(str(exc)) from None

    def run(self, *, study_uid: str | None = None, accession_no: str | None = None,
            exam_id: int | None = None) -> str:
        if study_uid:
            uids = [study_uid]
        elif accession_no:
            uids = self.resolve(accession_no)
        else:
            raise Fatal("retrieve payload needs study_uid or accession_no")
        return "; ".join(self.study(uid, accession_no=accession_no, exam_id=exam_id)
                         for uid in uids)

    def resolve(self, accession_no: str) -> list[str]:
        uids = self.pacs.studies_of_accession(accession_no)
        if not uids:
            raise RetryLater(f"{self.pacs.where} has no study with AccessionNumber "
                             f"{accession_no} (yet): the images may not be archived; "
                             "will ask again")
        for uid in uids:
            self.store.instances.ensure_study(uid, accession_no=accession_no)
        log.info("study.resolved", accession_no=accession_no, study_uids=uids)
        return uids

    # -- one study ------------------------------------------------------------------------
    def study(self, study_uid: str, *, accession_no: str | None = None,
              exam_id: int | None = None) -> str:
        self.store.instances.ensure_study(study_uid, accession_no=accession_no,
                                          exam_id=exam_id)
        started = time.monotonic()
        exp = self._expected(study_uid)
        if exp.count == 0:
            raise RetryLater(f"{self.pacs.where} lists no instance for study {study_uid} "
                             "(yet); will ask again")
        have = present_sop_uids(self.store, study_uid)
        self.store.instances.set_study(study_uid, state="retrieving", expected_count=exp.count)
        missing = exp.missing(have)
        log.info("study.retrieve_started", study_uid=study_uid, expected=exp.count,
                 present=len(have), missing=exp.size(missing))
        moved = 0
        if missing:
            moved += self._move(study_uid, exp, missing, whole=not have)
            missing = exp.missing(present_sop_uids(self.store, study_uid))
        if missing:  # repair: ask again for exactly what did not arrive
            log.warning("study.repairing", study_uid=study_uid, missing=exp.size(missing))
            moved += self._move(study_uid, exp, missing, whole=False)
            missing = exp.missing(present_sop_uids(self.store, study_uid))
        return self._finish(study_uid, exp, missing, moved, started)

    def _expected(self, study_uid: str) -> Expected:
        """The SOP Instance UIDs by series, or only their number when the PACS refuses
        image-level queries and answers NumberOfStudyRelatedInstances."""
        try:
            by_series = self.pacs.study_instances(study_uid)
            return Expected(by_series, sum(len(s) for s in by_series.values()))
        except PacsRefused as exc:
            log.warning("pacs.image_query_refused", study_uid=study_uid, error=str(exc))
            count = self.pacs.study_instance_count(study_uid)
            if count is None:
                raise PacsRefused(f"{exc}; and it gives no NumberOfStudyRelatedInstances "
                                  "either, so completeness cannot be checked") from None
            return Expected(None, count)

    def _move(self, study_uid: str, exp: Expected, missing: Missing, whole: bool) -> int:
        held = exp.count - exp.size(missing)
        if whole or exp.by_series is None:
            return self.pacs.move("STUDY", {"StudyInstanceUID": study_uid},
                                  self._told(study_uid, held, exp.count)).completed
        assert isinstance(missing, dict)
        return self._move_images(study_uid, missing, held, exp.count)

    def _move_images(self, study_uid: str, missing: dict[str, set[str]], held: int,
                     expected: int) -> int:
        moved = 0
        for series_uid, sops in missing.items():
            ordered = sorted(sops)
            for i in range(0, len(ordered), IMAGE_MOVE_BATCH):
                batch = ordered[i:i + IMAGE_MOVE_BATCH]
                moved += self.pacs.move("IMAGE", {"StudyInstanceUID": study_uid,
                                                  "SeriesInstanceUID": series_uid,
                                                  "SOPInstanceUID": batch},
                                        self._told(study_uid, held + moved, expected)
                                        ).completed
        return moved

    def _told(self, study_uid: str, held: int, expected: int
              ) -> Callable[[int, int], None] | None:
        """The C-MOVE's pending responses (completed, remaining) as study progress."""
        if self.progress is None:
            return None
        tell = self.progress
        return lambda completed, _remaining: tell(study_uid, held + completed, expected)

    def _finish(self, study_uid: str, exp: Expected, missing: Missing, moved: int,
                started: float) -> str:
        seconds = round(time.monotonic() - started, 2)
        if missing:
            n = exp.size(missing)
            detail: dict[str, Any] = {"missing": n, "expected": exp.count, "moved": moved}
            if isinstance(missing, dict):
                detail["missing_sop_uids"] = sorted(u for s in missing.values() for u in s)[:50]
            self.store.instances.set_study(study_uid, state="incomplete",
                                           expected_count=exp.count, detail=detail)
            log.warning("study.incomplete", study_uid=study_uid, missing=n, expected=exp.count,
                        moved=moved, seconds=seconds)
            raise RetryLater(f"study {study_uid}: {n} of {exp.count} instances did not arrive "
                             f"after C-MOVE and repair from {self.pacs.where}; will try again")
        with self.store.db.tx() as c:
            self.store.instances.set_study(study_uid, state="complete", expected_count=exp.count,
                                           detail={"moved": moved, "at": time.time()}, conn=c)
            self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid, conn=c)
        log.info("study.complete", study_uid=study_uid, instances=exp.count, moved=moved,
                 seconds=seconds)
        return f"study {study_uid}: complete, {exp.count} instances, {moved} moved"


Missing = dict[str, set[str]] | int


@dataclass(frozen=True)
class Expected:
    by_series: dict[str, set[str]] | None  # None: the PACS only told us how many
    count: int

    def missing(self, have: set[str]) -> Missing:
        if self.by_series is None:
            return max(0, self.count - len(have))
        return {series: sops - have for series, sops in self.by_series.items()
                if sops - have}

    @staticmethod
    def size(missing: Missing) -> int:
        return sum(len(s) for s in missing.values()) if isinstance(missing, dict) else missing
