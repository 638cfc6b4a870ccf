"""The PACS as seen by its SCU: C-ECHO, C-FIND (study, series, image), C-MOVE.

Failures become exceptions whose message says what to fix: PacsUnavailable for what a
retry can cure (no association, timeout, abort), PacsRefused for what needs a person.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import Association

from ..config import DicomConfig, PacsConfig
from . import pynetdicom_tuning
from .move_watch import Activity, MoveWatch
from .qr_association import (
    PATIENT_ROOT,
    Associator,
    Model,
    PacsRefused,
    PacsUnavailable,
    model_of,
    this_host,
)

__all__ = ["MoveResult", "PacsClient", "PacsRefused", "PacsUnavailable", "StudyListing",
           "StudyMatch", "this_host"]


class MoveStalled(PacsUnavailable):
    """No C-MOVE response and no instance received for pacs.timeout: we abandoned it."""


class Cancelled(PacsUnavailable):
    """dicomgate is stopping: its own C-MOVEs were aborted (the PACS is not to blame)."""


@dataclass(frozen=True)
class MoveResult:
    completed: int
    failed: int
    warning: int
    status: int
    failed_uids: tuple[str, ...] = ()  # Failed SOP Instance UID List of the final response


@dataclass(frozen=True)
class StudyListing:
    """What the PACS lists for a study at SERIES/IMAGE level."""
    by_series: dict[str, set[str]]  # SeriesInstanceUID -> SOP Instance UIDs
    sop_classes: dict[str, str] = field(default_factory=dict)  # SOP UID -> SOP Class UID


@dataclass(frozen=True)
class StudyMatch:
    """A study the PACS found for an AccessionNumber, and the values it gave that can name
    a hospital (issuer of the accession number, institution name)."""
    study_uid: str
    hospital_marks: tuple[str, ...] = ()


def _hospital_marks(d: Dataset) -> set[str]:
    marks = {str(d.get("InstitutionName", "") or "").strip()}
    for item in d.get("IssuerOfAccessionNumberSequence", None) or []:
        for key in ("LocalNamespaceEntityID", "UniversalEntityID"):
            marks.add(str(item.get(key, "") or "").strip())
    return {m for m in marks if m}


class _Live:
    """The client's open associations to the PACS (shared by its session copies), and the
    C-MOVE message IDs they use: the Portal AET's record ties each incoming association
    to the C-MOVE (move originator AE + message ID) it serves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: set[Association] = set()
        self.cancelled = False
        self._ids = itertools.count(random.randrange(1, 0xFFFF))

    def message_id(self) -> int:
        with self.lock:
            return next(self._ids) % 0xFFFF + 1  # 1..65535 (Message ID is a US)

    def cancel(self) -> int:
        """Abort every open association (dicomgate is stopping); returns how many."""
        with self.lock:
            self.cancelled = True
            live = list(self.open)
        for assoc in live:
            assoc.abort()
            pynetdicom_tuning.wake_waiting(assoc)
        return len(live)


def _with_result(exc: Exception, result: MoveResult) -> Exception:
    """Attach the final C-MOVE response to the exception (the retriever explains it)."""
    exc.move_result = result  # type: ignore[attr-defined]
    return exc


class PacsClient:
    def __init__(self, dicom: DicomConfig, pacs: PacsConfig):
        self.dicom = dicom
        self.pacs = pacs
        # study UID -> PatientID (Patient Root), kept only for one session (one study)
        self._patient_ids: dict[str, str] | None = None
        self._session: Association | None = None  # set on the copy session() yields
        self._live = _Live()

    def next_message_id(self) -> int:
        return self._live.message_id()

    def cancel(self) -> int:
        """dicomgate is stopping: abort every association to the PACS now open; every
        operation after this fails with Cancelled."""
        return self._live.cancel()

    @property
    def where(self) -> str:
        return f"PACS {self.pacs.ae_title} at {self.pacs.host}:{self.pacs.port}"

    @contextmanager
    def session(self) -> Iterator[PacsClient]:
        """A client whose C-FINDs and C-MOVEs share one association (the move association
        proposes FIND beside MOVE): one study's queries and move cost one association
        set-up on each side instead of three or more. A service the PACS did not accept on
        it, or anything after it dropped, gets an association of its own as before."""
        if self._session is not None:
            yield self
            return
        with self._association("move", self.pacs.timeout) as (assoc, _model):
            bound = copy.copy(self)
            bound._session = assoc
            bound._patient_ids = {}
            yield bound

    @contextmanager
    def _association(self, service: str, dimse_timeout: float
                     ) -> Iterator[tuple[Association, Model | None]]:
        shared = self._session
        if shared is not None and shared.is_established and service != "echo":
            model = model_of(shared, service)
            if model is not None:
                shared.dimse_timeout = dimse_timeout
                yield shared, model
                return
        if self._live.cancelled:
            raise Cancelled("dicomgate is stopping")
        assoc, model = Associator(self.dicom, self.pacs).open(service, dimse_timeout)
        with self._live.lock:
            self._live.open.add(assoc)
            late = self._live.cancelled  # cancel() ran while this one was opening
        try:
            if late:
                assoc.abort()
                raise Cancelled("dicomgate is stopping")
            yield assoc, model
        finally:
            with self._live.lock:
                self._live.open.discard(assoc)
            if assoc.is_established:
                assoc.release()

    def _identifier(self, model: Model | None, level: str, keys: dict[str, str | list[str]],
                    patient_needed: bool) -> Dataset:
        """The request identifier. Patient Root is hierarchical from the patient: below
        PATIENT level (and for every C-MOVE) the identifier carries the PatientID."""
        query = Dataset()
        query.QueryRetrieveLevel = level
        if model is PATIENT_ROOT and "PatientID" not in keys:
            uid = keys.get("StudyInstanceUID")
            query.PatientID = (self._patient_id(uid) if patient_needed and isinstance(uid, str)
                               else "")
        for k, v in keys.items():
            setattr(query, k, v)
        return query

    def _patient_id(self, study_uid: str) -> str:
        if self._patient_ids is not None and study_uid in self._patient_ids:
            return self._patient_ids[study_uid]
        for ident in self.find("STUDY", {"StudyInstanceUID": study_uid, "PatientID": ""}):
            if str(ident.get("StudyInstanceUID", "")) == study_uid and ident.get("PatientID"):
                return str(ident.PatientID)
        return ""

    def _remember_patient(self, ident: Dataset) -> None:
        uid, pid = ident.get("StudyInstanceUID"), ident.get("PatientID")
        if self._patient_ids is not None and uid and pid not in (None, ""):
            self._patient_ids[str(uid)] = str(pid)

    # -- C-ECHO ---------------------------------------------------------------------------
    def echo(self) -> float:
        """Round trip in seconds, association included."""
        t0 = time.monotonic()
        with self._association("echo", self.pacs.timeout) as (assoc, _model):
            status = assoc.send_c_echo()
            if not status or "Status" not in status:
                raise PacsUnavailable(f"{self.where} sent no C-ECHO response")
            if status.Status != 0x0000:
                raise PacsRefused(f"{self.where} answered C-ECHO with status "
                                  f"0x{status.Status:04X}")
        return time.monotonic() - t0

    # -- C-FIND ---------------------------------------------------------------------------
    def find(self, level: str, keys: dict[str, str | list[str]]) -> list[Dataset]:
        out: list[Dataset] = []
        with self._association("find", self.pacs.timeout) as (assoc, model):
            assert model is not None
            query = self._identifier(model, level, keys, patient_needed=level != "STUDY")
            for status, ident in assoc.send_c_find(query, model.find):
                if not status or "Status" not in status:
                    raise PacsUnavailable(f"{self.where} stopped answering the {level}-level "
                                          "C-FIND (timeout or abort)")
                code = status.Status
                if code in (0xFF00, 0xFF01):
                    if ident is not None:
                        out.append(ident)
                        self._remember_patient(ident)
                elif code == 0x0000:
                    break
                else:
                    raise PacsRefused(f"{self.where} refused the {level}-level C-FIND: "
                                      f"{_status_text(code, status)}")
        return out

    def studies_of_accession(self, accession: str) -> list[StudyMatch]:
        """The studies carrying this AccessionNumber, with what each says about its
        hospital (Issuer of Accession Number, Institution Name) when the PACS answers it."""
        keys = {"AccessionNumber": accession, "StudyInstanceUID": "", "PatientID": ""}
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = ""
        issuer.UniversalEntityID = ""
        try:
            found = self.find("STUDY", {**keys, "InstitutionName": "",
                                        "IssuerOfAccessionNumberSequence": [issuer]})
        except PacsRefused:  # a PACS that refuses those return keys: without them
            found = self.find("STUDY", keys)
        out: dict[str, set[str]] = {}
        for d in found:
            if d.get("StudyInstanceUID"):
                out.setdefault(str(d.StudyInstanceUID), set()).update(_hospital_marks(d))
        return [StudyMatch(uid, tuple(sorted(marks))) for uid, marks in sorted(out.items())]

    def study_instances(self, study_uid: str) -> StudyListing:
        """The study's SOP Instance UIDs by series and their SOP classes: series-level,
        then image-level per series (the hierarchical form every PACS must support)."""
        series = self.find("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": ""})
        out: dict[str, set[str]] = {}
        classes: dict[str, str] = {}
        for s in series:
            series_uid = str(s.get("SeriesInstanceUID", "") or "")
            if not series_uid:
                continue
            keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                    "SOPInstanceUID": ""}
            try:
                found = self.find("IMAGE", {**keys, "SOPClassUID": ""})
            except PacsRefused:
                # A PACS that reads SOP Class UIDs from its files (Orthanc) fails the whole
                # C-FIND when one file is unreadable; the UIDs alone come from its index.
                found = self.find("IMAGE", keys)
            out[series_uid] = {str(d.SOPInstanceUID) for d in found if d.get("SOPInstanceUID")}
            classes.update({str(d.SOPInstanceUID): str(d.get("SOPClassUID", "") or "")
                            for d in found if d.get("SOPInstanceUID")})
        return StudyListing(out, classes)

    def study_instance_count(self, study_uid: str) -> int | None:
        found = self.find("STUDY", {"StudyInstanceUID": study_uid, "PatientID": "",
                                    "NumberOfStudyRelatedInstances": ""})
        for d in found:
            n = d.get("NumberOfStudyRelatedInstances")
            if n not in (None, ""):
                return int(n)
        return None

    # -- C-MOVE ---------------------------------------------------------------------------
    def move(self, level: str, keys: dict[str, str | list[str]],
             progress: Callable[[int, int], None] | None = None,
             activity: Activity | None = None, msg_id: int | None = None) -> MoveResult:
        """C-MOVE to our own AE; follows pending responses until the final one. `msg_id`
        (next_message_id) is the Message ID the PACS's C-STOREs name as move originator.

        Abandoned (MoveStalled) when neither a response nor an instance (`activity`: the
        time the newest one landed) comes for pacs.timeout."""
        msg_id = msg_id if msg_id is not None else self.next_message_id()
        final: Dataset | None = None
        final_ident: Dataset | None = None
        with self._association("move", self.pacs.move_timeout) as (assoc, model), \
                MoveWatch(self.pacs.timeout, lambda: _abandon(assoc), activity) as watch:
            assert model is not None
            query = self._identifier(model, level, keys, patient_needed=True)
            for status, ident in assoc.send_c_move(query, self.dicom.ae_title, model.move,
                                                   msg_id=msg_id):
                if not status or "Status" not in status:
                    raise self._move_interrupted(watch)
                watch.responded()
                if status.Status in (0xFF00, 0xFF01):
                    if progress is not None:
                        progress(int(status.get("NumberOfCompletedSuboperations", 0) or 0),
                                 int(status.get("NumberOfRemainingSuboperations", 0) or 0))
                    continue
                final, final_ident = status, ident
                break
        if final is None:
            raise PacsUnavailable(f"{self.where} ended the C-MOVE without a final status")
        code = int(final.Status)
        result = MoveResult(int(final.get("NumberOfCompletedSuboperations", 0) or 0),
                            int(final.get("NumberOfFailedSuboperations", 0) or 0),
                            int(final.get("NumberOfWarningSuboperations", 0) or 0), code,
                            _failed_uids(final_ident))
        if code in (0x0000, 0xB000):
            return result
        if code == 0xA801:
            me = self.dicom.ae_title
            raise _with_result(PacsRefused(
                f"PACS {self.pacs.ae_title} does not know move destination {me}: add AE "
                f"{me}, host {this_host(self.dicom.bind)}, port {self.dicom.port} on the PACS "
                "(status 0xA801)"), result)
        if code in (0xA701, 0xA702, 0xA700):
            raise _with_result(PacsUnavailable(
                f"{self.where} is out of resources for the C-MOVE "
                f"({_status_text(code, final)})"), result)
        if code == 0xFE00:
            raise _with_result(PacsUnavailable(f"{self.where} cancelled the C-MOVE"), result)
        # whose fault it is, the Portal AET's record of this C-MOVE says (move_diagnosis)
        raise _with_result(PacsRefused(
            f"{self.where} refused the C-MOVE: {_status_text(code, final)}"), result)

    def _move_interrupted(self, watch: MoveWatch) -> PacsUnavailable:
        """Why the C-MOVE has no response: we abandoned it, it timed out, or it dropped."""
        if self._live.cancelled:
            return Cancelled("dicomgate is stopping: its C-MOVE was cancelled")
        if watch.stalled_for is not None:
            return MoveStalled(f"C-MOVE stalled: {self.where} sent no response and no "
                               f"instance for {watch.stalled_for:.0f}s (pacs.timeout "
                               f"{self.pacs.timeout:g}s); abandoned, will retry")
        quiet = watch.since_response()
        if quiet >= self.pacs.move_timeout - 1:
            return PacsUnavailable(f"{self.where} sent no C-MOVE response within "
                                   f"{self.pacs.move_timeout:g}s (pacs.move_timeout)")
        return PacsUnavailable(f"{self.where} dropped the association during the C-MOVE "
                               f"{quiet:.0f}s after its last response (its DICOM service "
                               "stopped or restarted, or the network failed)")


def _failed_uids(ident: Dataset | None) -> tuple[str, ...]:
    """The final response's Failed SOP Instance UID List (one UID or several)."""
    value = ident.get("FailedSOPInstanceUIDList") if ident is not None else None
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(u for u in value.split("\\") if u)
    return tuple(str(u) for u in value)


def _abandon(assoc: Association) -> None:
    """Abort from another thread, and wake the C-MOVE loop waiting for a response."""
    assoc.abort()
    pynetdicom_tuning.wake_waiting(assoc)


def _status_text(code: int, status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f"status 0x{code:04X}" + (f" ({comment})" if comment else "")
