"""Opening an association to the PACS's Q/R SCP, and saying exactly why one failed.

- **Query models.** Study Root first, Patient Root as the fallback, both proposed on every
  association: a PACS that serves Patient Root only is used through it.
- **FIND on the move association.** Some PACSs (dcmqrscp `--require-find`) accept a
  C-MOVE context only when the matching C-FIND context is proposed beside it: it always is.
- **Why it failed**, decided from what dicomgate itself saw: the A-ASSOCIATE-RJ's result,
  source and reason (caught as the PDU arrives: when the PACS closes its socket right
  after rejecting, pynetdicom may report an abort instead), the presentation contexts the
  PACS rejected, a refused TCP connection, a timeout. Each message names the side to fix
  and the configuration key involved.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from pynetdicom import AE, Association, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..config import DicomConfig, PacsConfig
from . import pynetdicom_tuning, reactor_guard


class PacsUnavailable(Exception):
    """The PACS did not answer or dropped us: retry later."""


class PacsRefused(Exception):
    """The PACS answered with a failure that retrying will not cure."""


@dataclass(frozen=True)
class Model:
    name: str  # "Study Root" | "Patient Root"
    find: str
    move: str


STUDY_ROOT = Model("Study Root", StudyRootQueryRetrieveInformationModelFind,
                   StudyRootQueryRetrieveInformationModelMove)
PATIENT_ROOT = Model("Patient Root", PatientRootQueryRetrieveInformationModelFind,
                     PatientRootQueryRetrieveInformationModelMove)
MODELS = (STUDY_ROOT, PATIENT_ROOT)

# What each service proposes, in order of preference (FIND beside MOVE: see above).
CONTEXTS = {
    "echo": [Verification],
    "find": [STUDY_ROOT.find, PATIENT_ROOT.find],
    "move": [STUDY_ROOT.move, STUDY_ROOT.find, PATIENT_ROOT.move, PATIENT_ROOT.find],
}

_CONTEXT_RESULT = {1: "refused by the PACS", 2: "refused, no reason given",
                   3: "SOP class not supported", 4: "transfer syntaxes not supported"}


@dataclass
class Seen:
    """What came back while associating (filled by the event handlers)."""
    rejection: tuple[int, int, int] | None = None  # result, source, reason
    refused_contexts: list[str] = field(default_factory=list)


def model_of(assoc: Association, service: str) -> Model | None:
    """The first query model whose contexts for `service` the PACS accepted."""
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    for m in MODELS:
        if service == "find" and m.find in accepted:
            return m
        if service == "move" and m.move in accepted:
            return m
    return None


class Associator:
    def __init__(self, dicom: DicomConfig, pacs: PacsConfig):
        self.dicom, self.pacs = dicom, pacs

    @property
    def where(self) -> str:
        return f"PACS {self.pacs.ae_title} at {self.pacs.host}:{self.pacs.port}"

    def open(self, service: str, dimse_timeout: float) -> tuple[Association, Model | None]:
        """An established association for `service` ("echo", "find", "move") and the query
        model to use on it; PacsUnavailable / PacsRefused say why not."""
        ae = AE(ae_title=self.dicom.ae_title)
        for uid in CONTEXTS[service]:
            ae.add_requested_context(uid)
        ae.acse_timeout = ae.network_timeout = self.pacs.timeout
        ae.connection_timeout = self.pacs.timeout
        ae.dimse_timeout = dimse_timeout
        seen = Seen()
        started = time.monotonic()
        assoc = ae.associate(self.pacs.host, self.pacs.port, ae_title=self.pacs.ae_title,
                             evt_handlers=[(evt.EVT_PDU_RECV, _catch_rejection(seen)),
                                           (evt.EVT_ACCEPTED, _catch_contexts(seen)),
                                           (evt.EVT_CONN_OPEN, _no_delay)])
        if not assoc.is_established:
            raise self.failure(assoc, seen, service, time.monotonic() - started)
        reactor_guard.keep_responses(assoc)
        model = model_of(assoc, service) if service != "echo" else None
        if service != "echo" and model is None:
            assoc.release()
            raise PacsRefused(self._no_model(service, seen))
        return assoc, model

    # -- why not --------------------------------------------------------------------------
    def failure(self, assoc: Association, seen: Seen, service: str,
                waited: float = 0.0) -> Exception:
        if seen.rejection is not None:
            return self._rejected(*seen.rejection)
        if seen.refused_contexts:  # accepted, but not one context: pynetdicom aborts
            return PacsRefused(self._no_model(service, seen))
        try:  # pynetdicom reports a refused connection as an abort: tell them apart
            socket.create_connection((self.pacs.host, self.pacs.port),
                                     timeout=self.pacs.timeout).close()
        except OSError as exc:
            return PacsUnavailable(
                f"{self.where} did not answer: {exc.strerror or exc} (check pacs.host and "
                "pacs.port, the network, and that the PACS DICOM service runs)")
        if assoc.is_aborted and waited >= self.pacs.timeout - 0.5:
            # pynetdicom aborted by itself: the answer did not come within acse_timeout
            return PacsUnavailable(
                f"{self.where} accepted the TCP connection but did not answer the association "
                f"request within {self.pacs.timeout:g}s (pacs.timeout); dicomgate gave up and "
                "aborted it: its DICOM service may be hung or overloaded")
        if assoc.is_aborted:
            return PacsUnavailable(
                f"{self.where} accepted the TCP connection, then closed it without answering "
                f"the association request from {self.dicom.ae_title} (a PACS that drops "
                "callers it does not know does this: check the PACS knows AE "
                f"{self.dicom.ae_title} (dicom.ae_title) from this host; else its DICOM "
                "service may be hung)")
        return PacsUnavailable(
            f"{self.where} did not answer the association request within "
            f"{self.pacs.timeout:g}s (pacs.timeout): its DICOM service may be hung or "
            "overloaded")

    def _rejected(self, result: int, source: int, reason: int) -> Exception:
        me, them = self.dicom.ae_title, self.pacs.ae_title
        register = (f"register AE {me} (dicom.ae_title), host {this_host(self.dicom.bind)}, "
                    f"port {self.dicom.port} on the PACS")
        head = f"{self.where} rejected the association from {me}"
        if source == 1 and reason == 3:
            return PacsRefused(f"{head}: calling AE title {me} not recognised: {register}, "
                               "or set dicom.ae_title to the AE title the PACS knows")
        if source == 1 and reason == 7:
            return PacsRefused(f"{head}: called AE title {them} not recognised: check that "
                               f"pacs.ae_title ({them!r}) is the PACS's Q/R AE title; some "
                               f"PACSs (DCMTK dcmqrscp) also answer this to a caller they do "
                               f"not allow: then {register}")
        if result == 2 or source == 3:
            return PacsUnavailable(f"{head}: busy (transient rejection, "
                                   f"{_rj_text(result, source, reason)}); will retry")
        return PacsRefused(f"{head} ({_rj_text(result, source, reason)}): check that "
                           f"pacs.ae_title ({them!r}) is the PACS's Q/R AE title and "
                           f"{register}")

    def _no_model(self, service: str, seen: Seen) -> str:
        refused = "; ".join(seen.refused_contexts) or "no context accepted"
        want = {"move": "C-MOVE", "find": "C-FIND", "echo": "C-ECHO"}[service]
        return (f"{self.where} accepted the association but offers {self.dicom.ae_title} no "
                f"{want} in the Study Root or Patient Root model ({refused}): on the PACS, "
                f"grant AE {self.dicom.ae_title} (dicom.ae_title) query/retrieve")


def _no_delay(event: evt.Event) -> None:
    """Send each request at once: a C-FIND/C-MOVE request goes as two PDUs (command, then
    identifier) and with Nagle's algorithm the second waits for the PACS's delayed ACK,
    ~40 ms per request on a quiet link."""
    pynetdicom_tuning.no_delay(event.assoc)


def _catch_rejection(seen: Seen):
    def handler(event: evt.Event) -> None:
        pdu = event.pdu
        if isinstance(pdu, A_ASSOCIATE_RJ):
            seen.rejection = (int(pdu.result or 0), int(pdu.source or 0),
                              int(pdu.reason_diagnostic or 0))
    return handler


def _catch_contexts(seen: Seen):
    def handler(event: evt.Event) -> None:
        for cx in event.assoc.rejected_contexts:
            name = getattr(cx.abstract_syntax, "name", str(cx.abstract_syntax))
            seen.refused_contexts.append(
                f"{name}: {_CONTEXT_RESULT.get(cx.result or 0, f'result {cx.result}')}")
    return handler


_SOURCES = {1: "service user", 2: "service provider (ACSE)", 3: "service provider (presentation)"}
_REASONS = {(1, 1): "no reason given", (1, 2): "application context name not supported",
            (1, 3): "calling AE title not recognised", (1, 7): "called AE title not recognised",
            (2, 1): "no reason given", (2, 2): "protocol version not supported",
            (3, 1): "temporary congestion", (3, 2): "local limit exceeded"}


def _rj_text(result: int, source: int, reason: int) -> str:
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    return (f"{kind}, source {_SOURCES.get(source, source)}, reason "
            f"{_REASONS.get((source, reason), reason)}")


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
