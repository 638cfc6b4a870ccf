"""Turn a received or downloaded Part 10 file into a spool file plus its state-store row.

Both producers (the storage SCP and HTTP image mode) end here: identify the instance
from its header (no pixel decoding), write it under its final name atomically, record
it and enqueue the study's upload in one transaction.
"""

from __future__ import annotations

import errno
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydicom import dcmread

from ..state import Store
from ..state.kinds import Upload
from .spool import Spool, dataset_offset, file_chunks, part10_header, valid_uid

log = structlog.get_logger("dicomgate.images")

_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]


NOTE_WAIT = 2.0  # seconds an association thread waits for its event to be recorded


class Malformed(Exception):
    """The data cannot be stored as an instance; the message is the reason."""


class OutOfSpace(Exception):
    """Free space in the state dir is below dicom.min_free_disk (or the disk is full)."""


@dataclass(frozen=True)
class Identity:
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str


@dataclass(frozen=True)
class Stored:
    identity: Identity
    outcome: str  # "new" | "same" | "replaced"
    path: Path
    size: int
    sha256: str


def identify(path: Path) -> Identity:
    """Read the identifying UIDs of a Part 10 file; Malformed says what is wrong."""
    try:
        ds = dcmread(path, stop_before_pixels=True, defer_size=1024, specific_tags=_TAGS)
        meta = ds.file_meta
        values = {k: str(ds.get(k, "") or "").strip() for k in _TAGS}
        ts = str(meta.get("TransferSyntaxUID", "") or "")
        if not values["SOPClassUID"]:
            values["SOPClassUID"] = str(meta.get("MediaStorageSOPClassUID", "") or "")
    except Exception as exc:
        raise Malformed(f"not a readable DICOM dataset: {type(exc).__name__}: {exc}") from None
    names = {"SOPInstanceUID": "(0008,0018)", "StudyInstanceUID": "(0020,000D)",
             "SeriesInstanceUID": "(0020,000E)", "SOPClassUID": "(0008,0016)"}
    for key, tag in names.items():
        if not valid_uid(values[key]):
            raise Malformed(f"{key} {tag} is {values[key]!r}: expected a UID "
                            "(digits and dots, at most 64 characters)")
    if not valid_uid(ts):
        raise Malformed(f"TransferSyntaxUID (0002,0010) is {ts!r}: expected a UID")
    return Identity(values["SOPInstanceUID"], values["StudyInstanceUID"],
                    values["SeriesInstanceUID"], values["SOPClassUID"], ts)


class Ingest:
    def __init__(self, store: Store, spool: Spool, min_free_disk: int,
                 queue_uploads: bool = True):
        self.store = store
        self.spool = spool
        self.min_free_disk = min_free_disk
        # False without [upstream]: nobody would run them (upstream queues what is waiting
        # when it is switched on)
        self.queue_uploads = queue_uploads
        # One thread (so one SQLite connection) records every instance, whatever thread
        # received it: association threads come and go, connections would pile up.
        self._db = ThreadPoolExecutor(1, thread_name_prefix="spool-db")

    def close(self) -> None:
        self._db.shutdown(wait=True)

    def note(self, kind: str, reason: str, **fields: object) -> None:
        """Record a DICOM event (state/dicom_events.py) from any association thread;
        a failure to record is logged, never raised into the association. Waits (bounded)
        for the write: the PACS may end its C-MOVE the moment it hears the refusal, and
        the retrieve reads these events to say whose doing a failure was."""
        def write() -> None:
            try:
                self.store.dicom_events.record(kind, reason, **fields)  # type: ignore[arg-type]
            except Exception as exc:
                log.error("dicom_event.not_recorded", kind=kind, reason=reason,
                          error=f"{type(exc).__name__}: {exc}")
        try:
            self._db.submit(write).result(timeout=NOTE_WAIT)
        except RuntimeError:  # shut down: the SCP is stopping
            pass
        except TimeoutError:  # the write still lands; the association does not wait more
            log.warning("dicom_event.late", kind=kind, waited_seconds=NOTE_WAIT)

    def has_room(self) -> bool:
        return self.spool.free_bytes() >= self.min_free_disk

    def from_network(self, src: Path, *, transfer_syntax: str, sop_class_uid: str,
                     sop_uid: str, calling_aet: str,
                     digest: tuple[int, str] | None = None) -> Stored:
        """A C-STORE dataset that pynetdicom wrote (Part 10) to `src`; `digest` is its
        (size, sha256) when computed while it was written."""
        if not self.has_room():
            raise OutOfSpace("free space below dicom.min_free_disk")
        ident = identify(src)
        if ident.sop_uid != sop_uid:
            raise Malformed(f"dataset SOPInstanceUID {ident.sop_uid} differs from the "
                            f"C-STORE request's Affected SOP Instance UID {sop_uid}")
        if src.parent == self.spool.incoming:  # already on the spool's file system
            size, sha = digest or self.spool.digest(src)
            return self.commit(src, ident, size, sha, source=f"dicom:{calling_aet}")
        with open(src, "rb") as f:
            offset = dataset_offset(f)
        header = part10_header(sop_class_uid or ident.sop_class_uid, sop_uid,
                               transfer_syntax, calling_aet)
        temp = self.spool.temp_path()
        try:
            size, sha = self.spool.write(temp, itertools.chain([header],
                                                              file_chunks(src, offset)))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutOfSpace(f"disk full writing {temp}") from None
            raise
        return self.commit(temp, ident, size, sha, source=f"dicom:{calling_aet}")

    def from_file(self, temp: Path, size: int, sha: str, source: str) -> Stored:
        """A whole Part 10 file already in the spool's temp area (HTTP download)."""
        ident = identify(temp)
        return self.commit(temp, ident, size, sha, source=source)

    def commit(self, temp: Path, ident: Identity, size: int, sha: str, source: str) -> Stored:
        try:
            return self._db.submit(self._commit, temp, ident, size, sha, source).result()
        finally:
            temp.unlink(missing_ok=True)  # still there only when the step failed

    def _commit(self, temp: Path, ident: Identity, size: int, sha: str, source: str) -> Stored:
        final = self.spool.final_path(ident.study_uid, ident.series_uid, ident.sop_uid)
        store = self.store
        with store.transaction():
            old = store.instances.get_path(ident.sop_uid)
            outcome = store.instances.record(
                sop_uid=ident.sop_uid, study_uid=ident.study_uid, series_uid=ident.series_uid,
                sop_class_uid=ident.sop_class_uid, transfer_syntax=ident.transfer_syntax,
                path=str(final), size=size, sha256=sha, source=source)
            if outcome == "same" and final.exists():
                temp.unlink()
            else:
                self.spool.place(temp, final)
                if outcome == "replaced" and old and old != str(final):
                    Path(old).unlink(missing_ok=True)
            if outcome != "same" and self.queue_uploads:
                store.tasks.enqueue(Upload(ident.study_uid), reopen=True,
                                    study_uid=ident.study_uid)
        if outcome == "replaced":
            log.info("instance.replaced", sop_uid=ident.sop_uid, study_uid=ident.study_uid,
                     sha256=sha, source=source)
        else:
            log.debug("instance.stored", sop_uid=ident.sop_uid, study_uid=ident.study_uid,
                      outcome=outcome, size=size, source=source)
        return Stored(ident, outcome, final, size, sha)
