"""Turn a received or downloaded Part 10 file into a spool file plus its state-store row.

Both producers (the storage SCP and HTTP image mode) end here: identify the instance
from its header (no pixel decoding), write it under its final name atomically, record
it and enqueue the study's upload in one transaction.
"""

from __future__ import annotations

import errno
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydicom import dcmread

from ..state import Store
from ..state.kinds import Upload
from . import header
from .recorder import Recorder
from .spool import Spool, dataset_offset, file_chunks, part10_header, valid_uid

log = structlog.get_logger("dicomgate.images")

_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
_PIXEL_TAGS = ["Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames",
               "PixelData"]
# Syntaxes whose Pixel Data is stored native, so its length can be checked without decoding
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
PIXEL_DATA = 0x7FE00010


NOTE_WAIT = 2.0  # seconds an association thread waits for its event to be recorded


class Malformed(Exception):
    """The data cannot be stored as an instance; the message is the reason."""


class OutOfSpace(Exception):
    """A file system that receives files (spool, quarantine, state dir) is below
    dicom.min_free_disk, or full."""


@dataclass(frozen=True)
class Origin:
    """The Portal AET association a C-STORE came on (portal_associations), and the C-MOVE
    its request names as originator (None when the sender named none)."""
    association_id: int | None
    move_aet: str | None = None
    move_msg_id: int | None = None


@dataclass(frozen=True)
class Identity:
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    warning: str | None = None  # well-formed but suspect (Pixel Data shorter than it says)


@dataclass(frozen=True)
class Stored:
    identity: Identity
    outcome: str  # "new" | "same" | "replaced"
    path: Path
    size: int
    sha256: str


def identify(path: Path) -> Identity:
    """Read the identifying UIDs of a Part 10 file; Malformed says what is wrong."""
    h = header.read(path) or _read_with_pydicom(path)
    values = {"SOPInstanceUID": h.sop_uid, "StudyInstanceUID": h.study_uid,
              "SeriesInstanceUID": h.series_uid,
              "SOPClassUID": h.sop_class_uid or h.media_sop_class_uid}
    names = {"SOPInstanceUID": "(0008,0018)", "StudyInstanceUID": "(0020,000D)",
             "SeriesInstanceUID": "(0020,000E)", "SOPClassUID": "(0008,0016)"}
    for key, tag in names.items():
        if not valid_uid(values[key]):
            raise Malformed(f"{key} {tag} is {values[key]!r}: expected a UID "
                            "(digits and dots, at most 64 characters)")
    ts = h.transfer_syntax
    if not valid_uid(ts):
        raise Malformed(f"TransferSyntaxUID (0002,0010) is {ts!r}: expected a UID")
    return Identity(values["SOPInstanceUID"], values["StudyInstanceUID"],
                    values["SeriesInstanceUID"], values["SOPClassUID"], ts,
                    short_pixel_data(h))


def _read_with_pydicom(path: Path) -> header.Header:
    """What header.read does not handle (big endian, deflate, a very long header...)."""
    try:
        # large values (Pixel Data) are deferred: only their length is read, never the pixels
        ds = dcmread(path, defer_size=1024, specific_tags=_TAGS + _PIXEL_TAGS)
        meta = ds.file_meta
        def text(v: object) -> str:
            return str(v or "").strip()

        h = header.Header(
            transfer_syntax=text(meta.get("TransferSyntaxUID", "")),
            media_sop_class_uid=text(meta.get("MediaStorageSOPClassUID", "")),
            sop_class_uid=text(ds.get("SOPClassUID", "")),
            sop_uid=text(ds.get("SOPInstanceUID", "")),
            study_uid=text(ds.get("StudyInstanceUID", "")),
            series_uid=text(ds.get("SeriesInstanceUID", "")))
    except Exception as exc:
        raise Malformed(f"not a readable DICOM dataset: {type(exc).__name__}: {exc}") from None
    try:
        h.rows, h.cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        h.bits, h.samples = int(ds.get("BitsAllocated") or 0), ds.get("SamplesPerPixel")
        h.frames = ds.get("NumberOfFrames")
        if PIXEL_DATA in ds:
            h.pixel_length = ds.get_item(PIXEL_DATA, keep_deferred=True).length  # type: ignore[union-attr,attr-defined]  # a RawDataElement: deferred
    except (TypeError, ValueError, AttributeError):
        h.pixel_length = None
    return h


def short_pixel_data(h: header.Header) -> str | None:
    """Native Pixel Data shorter than Rows x Columns x samples x frames x bits allocated
    says: the PACS holds a truncated image. Said, never altered (the cloud may refuse it)."""
    length = h.pixel_length
    if h.transfer_syntax not in NATIVE or length is None:
        return None
    try:
        rows, cols, bits = int(h.rows or 0), int(h.cols or 0), int(h.bits or 0)
        samples, frames = int(h.samples or 1), int(h.frames or 1)
    except (TypeError, ValueError):
        return None
    need = (rows * cols * samples * frames * bits + 7) // 8
    if not need or length == 0xFFFFFFFF or length >= need:
        return None
    return (f"Pixel Data (7FE0,0010) holds {length} bytes; Rows {rows} x Columns {cols} x "
            f"{samples} sample(s) x {frames} frame(s) x {bits} bits allocated need {need}: "
            "the image is truncated at the PACS (delivered as received; the cloud may "
            "reject it)")


class Ingest:
    def __init__(self, store: Store, spool: Spool, min_free_disk: int,
                 queue_uploads: bool = True):
        self.store = store
        self.spool = spool
        self.min_free_disk = min_free_disk
        # False without [upstream]: nobody would run them (upstream queues what is waiting
        # when it is switched on)
        self.queue_uploads = queue_uploads
        # One thread (so one database connection) records every instance, whatever thread
        # received it, instances waiting together in one transaction (recorder.py).
        self.recorder = Recorder(self._commit_group, self._commit_one)

    def close(self) -> None:
        self.recorder.shutdown(wait=True)

    def note(self, kind: str, reason: str, origin: Origin | None = None,
             **fields: object) -> None:
        """Record a DICOM event (state/dicom_events.py) from any association thread, on
        the association's record (a refused C-STORE is counted there); a failure to record
        is logged, never raised into the association. Waits (bounded) for the write: the
        PACS may end its C-MOVE the moment it hears the refusal, and the retrieve reads
        this record to say whose doing a failure was."""
        aid = origin.association_id if origin is not None else None

        def write() -> None:
            self.store.dicom_events.record(kind, reason, association_id=aid,
                                           **fields)  # type: ignore[arg-type]
            if kind == "store_refused" and origin is not None and aid is not None:
                self.store.portal_associations.counted(
                    aid, study_uid=None, move_aet=origin.move_aet,
                    move_msg_id=origin.move_msg_id, refused=1)
        self._write(write, kind)

    def opened(self, calling_aet: str, peer: str) -> int | None:
        """An incoming association, recorded before it is answered (its record's id)."""
        box: list[int] = []
        self._write(lambda: box.append(self.store.portal_associations.opened(
            calling_aet, peer, os.getpid())), "association_opened")
        return box[0] if box else None

    def rejected(self, association_id: int | None, reason: str, **fields: object) -> None:
        def write() -> None:
            if association_id is not None:
                self.store.portal_associations.rejected(association_id)
            self.store.dicom_events.record("association_rejected", reason,
                                           association_id=association_id,
                                           **fields)  # type: ignore[arg-type]
        self._write(write, "association_rejected")

    def ended(self, association_id: int, outcome: str) -> None:
        """How an association ended; not waited for (nobody is answered after it)."""
        try:
            self.recorder.submit(self._guarded, lambda: self.store.portal_associations.ended(
                association_id, outcome), "association_ended")
        except RuntimeError:  # shut down: the SCP is stopping
            pass

    def _write(self, write, what: str) -> None:
        try:
            self.recorder.submit(self._guarded, write, what).result(timeout=NOTE_WAIT)
        except RuntimeError:  # shut down: the SCP is stopping
            pass
        except TimeoutError:  # the write still lands; the association does not wait more
            log.warning("dicom_event.late", kind=what, waited_seconds=NOTE_WAIT)

    @staticmethod
    def _guarded(write, what: str) -> None:
        try:
            write()
        except Exception as exc:
            log.error("dicom_event.not_recorded", kind=what,
                      error=f"{type(exc).__name__}: {exc}")

    def has_room(self) -> bool:
        return self.short_of_space() is None

    def short_of_space(self) -> str | None:
        return self.spool.short_of_space(self.min_free_disk)

    def from_network(self, src: Path, *, transfer_syntax: str, sop_class_uid: str,
                     sop_uid: str, calling_aet: str,
                     digest: tuple[int, str] | None = None,
                     origin: Origin | None = None) -> Stored:
        """A C-STORE dataset that pynetdicom wrote (Part 10) to `src`; `digest` is its
        (size, sha256) when computed while it was written."""
        ident = identify(src)
        if ident.sop_uid != sop_uid:
            raise Malformed(f"dataset SOPInstanceUID {ident.sop_uid} differs from the "
                            f"C-STORE request's Affected SOP Instance UID {sop_uid}")
        if src.parent == self.spool.incoming:
            # already on the spool's file system, whose room was checked as it began to
            # arrive (pynetdicom_tuning): checking again now would count this very file
            size, sha = digest or self.spool.digest(src)
            return self.commit(src, ident, size, sha, source=f"dicom:{calling_aet}",
                               origin=origin)
        short = self.short_of_space()
        if short:
            raise OutOfSpace(short)
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
        return self.commit(temp, ident, size, sha, source=f"dicom:{calling_aet}",
                           origin=origin)

    def _warn(self, ident: Identity) -> None:
        """On the study (`study show`), the exam (its warnings) and the console's Problems."""
        log.warning("instance.suspect", sop_uid=ident.sop_uid, study_uid=ident.study_uid,
                    warning=ident.warning)
        text = f"instance {ident.sop_uid}: {ident.warning}"
        self.store.dicom_events.record("instance_suspect", text, sop_uid=ident.sop_uid,
                                       study_uid=ident.study_uid,
                                       sop_class_uid=ident.sop_class_uid)
        self.store.exams.warn_for_study(ident.study_uid, text)

    def from_file(self, temp: Path, size: int, sha: str, source: str) -> Stored:
        """A whole Part 10 file already in the spool's temp area (HTTP download)."""
        ident = identify(temp)
        return self.commit(temp, ident, size, sha, source=source)

    def commit(self, temp: Path, ident: Identity, size: int, sha: str, source: str,
               origin: Origin | None = None) -> Stored:
        """Record the instance and move `temp` under its final name; returns once both are
        done (committed), as the C-STORE response must wait for."""
        try:
            return self.recorder.record(_Item(temp, ident, size, sha, source, origin)).result()
        finally:
            temp.unlink(missing_ok=True)  # still there only when the step failed

    def _commit_one(self, item: _Item) -> Stored:
        return self._commit_group([item])[0]

    def _commit_group(self, items: list[_Item]) -> list[Stored]:
        """One transaction for the instances, each study's upload queued once and each
        association's count raised once; then what is said about each."""
        store = self.store
        with store.transaction():
            done = [self._place(item) for item in items]
            if self.queue_uploads:
                for study_uid in dict.fromkeys(d.identity.study_uid for d in done
                                               if d.outcome != "same"):
                    store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)
            counts: dict[tuple, int] = {}
            for item in items:
                o = item.origin
                if o is not None and o.association_id is not None:
                    key = (o.association_id, item.ident.study_uid, o.move_aet, o.move_msg_id)
                    counts[key] = counts.get(key, 0) + 1
            for (aid, study_uid, move_aet, move_msg_id), n in counts.items():
                store.portal_associations.counted(aid, study_uid=study_uid, move_aet=move_aet,
                                                  move_msg_id=move_msg_id, stored=n)
        for stored, item in zip(done, items, strict=True):
            self._said(stored, item.source)
        return done

    def _place(self, item: _Item) -> Stored:
        """The instance's row, and its file under its final name (inside the transaction)."""
        ident, temp = item.ident, item.temp
        final = self.spool.final_path(ident.study_uid, ident.series_uid, ident.sop_uid)
        old = self.store.instances.get_path(ident.sop_uid)
        outcome = self.store.instances.record(
            sop_uid=ident.sop_uid, study_uid=ident.study_uid, series_uid=ident.series_uid,
            sop_class_uid=ident.sop_class_uid, transfer_syntax=ident.transfer_syntax,
            path=str(final), size=item.size, sha256=item.sha, source=item.source)
        if outcome == "same" and final.exists():
            temp.unlink(missing_ok=True)
        elif not item.placed:  # moved already when its group was tried before
            self.spool.place(temp, final)
            item.placed = True
            if outcome == "replaced" and old and old != str(final):
                Path(old).unlink(missing_ok=True)
        return Stored(ident, outcome, final, item.size, item.sha)

    def _said(self, stored: Stored, source: str) -> None:
        ident, outcome = stored.identity, stored.outcome
        if ident.warning and outcome != "same":
            try:
                self._warn(ident)
            except Exception as exc:  # the instance is recorded: its C-STORE succeeded
                log.error("dicom_event.not_recorded", kind="instance_suspect",
                          sop_uid=ident.sop_uid, error=f"{type(exc).__name__}: {exc}")
        if outcome == "replaced":
            log.info("instance.replaced", sop_uid=ident.sop_uid, study_uid=ident.study_uid,
                     sha256=stored.sha256, source=source)
        else:
            log.debug("instance.stored", sop_uid=ident.sop_uid, study_uid=ident.study_uid,
                      outcome=outcome, size=stored.size, source=source)


@dataclass
class _Item:
    """One instance waiting to be recorded (recorder.py)."""
    temp: Path
    ident: Identity
    size: int
    sha: str
    source: str
    origin: Origin | None
    placed: bool = False
