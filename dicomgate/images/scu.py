"""The PACS as seen by its SCU: C-ECHO, C-FIND (study, series, image), C-MOVE.

Failures become exceptions whose message says what to fix: PacsUnavailable for what a
retry can cure (no association, timeout, abort), PacsRefused for what needs a person.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..config import DicomConfig, PacsConfig
from .move_watch import Activity, MoveWatch


class PacsUnavailable(Exception):
    """The PACS did not answer or dropped us: retry later."""


class PacsRefused(Exception):
    """The PACS answered with a failure that retrying will not cure."""


class MoveStalled(PacsUnavailable):
    """No C-MOVE response and no instance received for pacs.timeout: we abandoned it."""


class MoveFailed(PacsRefused):
    """A C-MOVE ended with a failure status. Whose fault it is (the PACS's, or our own
    SCP's refusals and crashes meanwhile) is decided by the retriever, which knows what
    our side saw (move_outcome.py); `hint` is the guess for when nothing on our side
    explains it."""

    def __init__(self, text: str, result: MoveResult, hint: str = ""):
        super().__init__(text + hint)
        self.text = text
        self.result = result
        self.hint = hint


@dataclass(frozen=True)
class MoveResult:
    completed: int
    failed: int
    warning: int
    status: int


def this_host(bind: str = "0.0.0.0") -> str:
    """The address to give the PACS for us: the bind address, else this host's name/IP."""
    if bind not in ("0.0.0.0", "::", ""):
        return bind
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return name
    return name if addr.startswith("127.") else addr


class PacsClient:
    def __init__(self, dicom: DicomConfig, pacs: PacsConfig):
        self.dicom = dicom
        self.pacs = pacs

    @property
    def where(self) -> str:
        return f"PACS {self.pacs.ae_title} at {self.pacs.host}:{self.pacs.port}"

    @contextmanager
    def _association(self, context: str, dimse_timeout: float) -> Iterator[Association]:
        ae = AE(ae_title=self.dicom.ae_title)
        ae.add_requested_context(context)
        ae.acse_timeout = ae.network_timeout = self.pacs.timeout
        ae.connection_timeout = self.pacs.timeout
        ae.dimse_timeout = dimse_timeout
        t0 = time.monotonic()
        assoc = ae.associate(self.pacs.host, self.pacs.port, ae_title=self.pacs.ae_title)
        if not assoc.is_established:
            raise PacsUnavailable(self._why_not(assoc, time.monotonic() - t0))
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _why_not(self, assoc: Association, waited: float = 0.0) -> str:
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            reason = getattr(rsp, "reason_str", "no reason given")
            me = self.dicom.ae_title
            return (f"{self.where} rejected the association from {me} ({reason}): the PACS "
                    f"must know AE {me} (host {this_host(self.dicom.bind)}, port "
                    f"{self.dicom.port}) and allow it C-ECHO, C-FIND and C-MOVE")
        try:  # pynetdicom reports a refused connection as an abort: tell them apart
            socket.create_connection((self.pacs.host, self.pacs.port),
                                     timeout=self.pacs.timeout).close()
        except OSError as exc:
            return (f"{self.where} did not answer: {exc.strerror or exc} (check pacs.host, "
                    "pacs.port, the network, and that the PACS DICOM service runs)")
        if assoc.is_aborted and waited >= self.pacs.timeout - 0.5:
            # pynetdicom aborts by itself when the answer does not come in time
            return (f"{self.where} accepted the connection but did not answer the "
                    f"association request within {self.pacs.timeout:g}s (pacs.timeout): we "
                    "gave up; its DICOM service may be hung")
        if assoc.is_aborted:
            return f"{self.where} aborted the association after {waited:.1f}s"
        return (f"{self.where} did not answer within {self.pacs.timeout:g}s (check pacs.host, "
                "pacs.port, the network, and that the PACS DICOM service runs)")

    # -- C-ECHO ---------------------------------------------------------------------------
    def echo(self) -> float:
        """Round trip in seconds, association included."""
        t0 = time.monotonic()
        with self._association(Verification, self.pacs.timeout) as assoc:
            status = assoc.send_c_echo()
            if not status or "Status" not in status:
                raise PacsUnavailable(f"{self.where} sent no C-ECHO response")
            if status.Status != 0x0000:
                raise PacsRefused(f"{self.where} answered C-ECHO with status "
                                  f"0x{status.Status:04X}")
        return time.monotonic() - t0

    # -- C-FIND ---------------------------------------------------------------------------
    def find(self, level: str, keys: dict[str, str]) -> list[Dataset]:
        query = Dataset()
        query.QueryRetrieveLevel = level
        for k, v in keys.items():
            setattr(query, k, v)
        out: list[Dataset] = []
        model = StudyRootQueryRetrieveInformationModelFind
        with self._association(model, self.pacs.timeout) as assoc:
            for status, ident in assoc.send_c_find(query, model):
                if not status or "Status" not in status:
                    raise PacsUnavailable(f"{self.where} stopped answering the {level}-level "
                                          "C-FIND (timeout or abort)")
                code = status.Status
                if code in (0xFF00, 0xFF01):
                    if ident is not None:
                        out.append(ident)
                elif code == 0x0000:
                    break
                else:
                    raise PacsRefused(f"{self.where} refused the {level}-level C-FIND: "
                                      f"{_status_text(code, status)}")
        return out

    def studies_of_accession(self, accession: str) -> list[str]:
        found = self.find("STUDY", {"AccessionNumber": accession, "StudyInstanceUID": ""})
        return sorted({str(d.StudyInstanceUID) for d in found
                       if d.get("StudyInstanceUID")})

    def study_instances(self, study_uid: str) -> dict[str, set[str]]:
        """{SeriesInstanceUID: {SOPInstanceUID}}: series-level, then image-level per series
        (the hierarchical form every PACS must support)."""
        series = self.find("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": ""})
        out: dict[str, set[str]] = {}
        for s in series:
            series_uid = str(s.get("SeriesInstanceUID", "") or "")
            if not series_uid:
                continue
            found = self.find("IMAGE", {"StudyInstanceUID": study_uid,
                                        "SeriesInstanceUID": series_uid, "SOPInstanceUID": ""})
            out[series_uid] = {str(d.SOPInstanceUID) for d in found if d.get("SOPInstanceUID")}
        return out

    def study_instance_count(self, study_uid: str) -> int | None:
        found = self.find("STUDY", {"StudyInstanceUID": study_uid,
                                    "NumberOfStudyRelatedInstances": ""})
        for d in found:
            n = d.get("NumberOfStudyRelatedInstances")
            if n not in (None, ""):
                return int(n)
        return None

    # -- C-MOVE ---------------------------------------------------------------------------
    def move(self, level: str, keys: dict[str, str | list[str]],
             progress: Callable[[int, int], None] | None = None,
             activity: Activity | None = None) -> MoveResult:
        """C-MOVE to our own AE; follows pending responses until the final one.

        Abandoned (MoveStalled) when neither a response nor an instance (`activity`: the
        time the newest one landed) comes for pacs.timeout."""
        query = Dataset()
        query.QueryRetrieveLevel = level
        for k, v in keys.items():
            setattr(query, k, v)
        model = StudyRootQueryRetrieveInformationModelMove
        final: Dataset | None = None
        with self._association(model, self.pacs.move_timeout) as assoc, \
                MoveWatch(self.pacs.timeout, lambda: _abandon(assoc), activity) as watch:
            for status, _ident in assoc.send_c_move(query, self.dicom.ae_title, model):
                if not status or "Status" not in status:
                    raise self._move_interrupted(watch)
                watch.responded()
                if status.Status in (0xFF00, 0xFF01):
                    if progress is not None:
                        progress(int(status.get("NumberOfCompletedSuboperations", 0) or 0),
                                 int(status.get("NumberOfRemainingSuboperations", 0) or 0))
                    continue
                final = status
                break
        if final is None:
            raise PacsUnavailable(f"{self.where} ended the C-MOVE without a final status")
        code = int(final.Status)
        result = MoveResult(int(final.get("NumberOfCompletedSuboperations", 0) or 0),
                            int(final.get("NumberOfFailedSuboperations", 0) or 0),
                            int(final.get("NumberOfWarningSuboperations", 0) or 0), code)
        if code in (0x0000, 0xB000):
            return result
        if code == 0xA801:
            me = self.dicom.ae_title
            raise PacsRefused(
                f"PACS {self.pacs.ae_title} does not know move destination {me}: add AE "
                f"{me}, host {this_host(self.dicom.bind)}, port {self.dicom.port} on the PACS "
                "(status 0xA801)")
        if code == 0xFE00:
            raise PacsUnavailable(f"{self.where} cancelled the C-MOVE")
        counts = (f"{result.completed} sub-operations completed, {result.failed} failed, "
                  f"{result.warning} with warnings")
        if code in (0xA701, 0xA702, 0xA700):
            raise MoveFailed(f"{self.where} ended the C-MOVE out of resources "
                             f"({_status_text(code, final)}; {counts})", result)
        hint = ""
        if result.completed == 0 and code & 0xF000 == 0xC000:  # Orthanc says 0xC000 for it
            hint = (f"; if the PACS log says destination {self.dicom.ae_title} is unknown, add "
                    f"AE {self.dicom.ae_title}, host {this_host(self.dicom.bind)}, port "
                    f"{self.dicom.port} on the PACS")
        raise MoveFailed(f"{self.where} ended the C-MOVE with a failure: "
                         f"{_status_text(code, final)} ({counts})", result, hint)

    def _move_interrupted(self, watch: MoveWatch) -> PacsUnavailable:
        """Why the C-MOVE has no response: we abandoned it, it timed out, or it dropped."""
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


def _abandon(assoc: Association) -> None:
    """Abort from another thread. The C-MOVE loop waits on the DIMSE queue for up to
    move_timeout and an abort does not wake it: an empty item does (read as 'no response')."""
    assoc.abort()
    assoc.dimse.msg_queue.put((None, None))


def _status_text(code: int, status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f"status 0x{code:04X}" + (f" ({comment})" if comment else "")
