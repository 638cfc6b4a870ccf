"""Why a C-MOVE failed, decided from what dicomgate saw itself before guessing at the PACS.

The PACS's status code alone sends the administrator to the wrong side: a pynetdicom-based
PACS answers 0xA801 also when *our* Portal AET rejected its storage association or the
only syntax it offered; Orthanc says 0xC000 for both an unknown destination and a
destination that refused it. The Portal AET's record of the C-MOVE (move_record.py: the
associations it served, what they rejected) comes first; rejected presentation contexts,
logged once per sender every REJECTION_QUIET_SECONDS, are taken from that window.
"""

from __future__ import annotations

from ..config import DicomConfig
from ..state import DicomEvent
from .move_record import PortalSaw
from .negotiation import NOTHING_ACCEPTED, REJECTION_QUIET_SECONDS
from .qr_association import PacsRefused, PacsUnavailable, this_host
from .scu import MoveResult


class PortalAetRejected(PacsRefused):
    """The C-MOVE failed because the Portal AET rejected the PACS's association or what it
    offered: our configuration (or the object) must change, not the PACS's file."""


class PacsCannotReachUs(PacsRefused):
    """The PACS could not open its storage association to the Portal AET: its entry for
    our AE (host, port) is wrong, or the network between refuses it. Retried (counted):
    a person must fix it if it lasts."""

def contexts_since(move_started: float) -> float:
    """From when a rejected presentation context is evidence for a C-MOVE started at
    `move_started`: each is recorded once per sender every REJECTION_QUIET_SECONDS."""
    return move_started - REJECTION_QUIET_SECONDS


def explain(exc: Exception, result: MoveResult | None, saw: PortalSaw,
            contexts_seen: list[DicomEvent], dicom: DicomConfig, where: str,
            sop_classes: set[str] | None = None, reached: bool = False) -> Exception:
    """The exception to raise for a failed C-MOVE: ours first, else the PACS's own.

    `reached`: an earlier C-MOVE of this retrieve brought instances, so the PACS can reach
    the Portal AET (a request it then sends nothing for is not about our registration).

    `sop_classes`: those of the instances asked for, when the PACS's C-FIND said; a
    rejected context counts only for one of them (a DCMTK-based PACS proposes every SOP
    class it knows on each association, retired ones we reject included)."""
    if saw.rejections:
        e = saw.rejections[-1]
        return PortalAetRejected(
            f"the Portal AET {dicom.ae_title} rejected the storage association from "
            f"{e.calling_aet} ({e.peer}) during the C-MOVE: {e.reason}. The PACS sends "
            f"images from AE {e.calling_aet}: add it to dicom.allowed_calling_aets "
            f"(status from {where}: {_code(result)})")
    contexts = relevant_rejections(contexts_seen, sop_classes)
    if contexts and (result is None or result.completed == 0) and not saw.stored:
        what = "; ".join(f"{e.sop_class_uid} in [{e.transfer_syntaxes}]: {e.reason}"
                         for e in contexts[-5:])
        return PortalAetRejected(
            f"the Portal AET {dicom.ae_title} rejected what {where} offered for the C-MOVE "
            f"({what}). A private SOP class: add it to dicom.extra_sop_classes; a syntax: the "
            f"PACS must offer one the Portal AET accepts; see docs/operations.md (status "
            f"{_code(result)})")
    register = (f"AE {dicom.ae_title} (dicom.ae_title), host {this_host(dicom.bind)}, port "
                f"{dicom.port} (dicom.port)")
    nothing = saw.nothing_at_all() and not reached
    if result is not None and result.status == 0xA801 and nothing:
        return PacsRefused(
            f"{where} answered 0xA801 (move destination unknown) and the Portal AET saw no "
            f"association from it during the C-MOVE: on the PACS, add {register} as a move "
            "destination; if it is there, check its host and port: the PACS could not reach "
            "this gateway")
    if result is not None and result.status == 0xA702 and result.completed == 0:
        if nothing:
            return PacsCannotReachUs(
                f"{where} answered 0xA702 and the Portal AET saw no association from it during "
                f"the C-MOVE: the PACS could not reach this gateway. On the PACS, our AE must "
                f"be registered as {register}; check that entry, and that this host and port "
                "can be reached from the PACS (firewall)")
        return PacsUnavailable(
            f"{where} could not perform the C-MOVE's sub-operations (0xA702, out of "
            "resources); the Portal AET rejected nothing. DCMTK-based PACSs also answer this "
            "when they cannot convert an image to the syntax agreed: see the PACS log")
    if result is not None and result.status & 0xF000 == 0xC000 and result.completed == 0:
        if nothing:
            return PacsRefused(
                f"{exc}; the Portal AET saw no association from it during the C-MOVE: if the "
                f"PACS log says destination {dicom.ae_title} is unknown, add {register} on the "
                "PACS; else the PACS could not reach this gateway at that host and port")
        if not saw.associations:
            return PacsRefused(
                f"{exc}; it sent nothing for this request, though it reached the Portal AET "
                "for this study, and the Portal AET refused nothing: the failure is the "
                "PACS's own (an unreadable file?), see its log")
        return PacsRefused(
            f"{exc}; the Portal AET accepted the PACS's association and refused nothing "
            f"({saw.stored} instances stored): the failure is the PACS's own, see its log")
    return exc


def relevant_rejections(seen: list[DicomEvent], sop_classes: set[str] | None
                        ) -> list[DicomEvent]:
    """The rejected contexts that can explain a failed C-MOVE. A DCMTK-based PACS proposes
    every SOP class it knows on each association (retired ones we reject included), so a
    rejection counts when its SOP class is one the PACS's C-FIND gave for the instances;
    when C-FIND gave none, when it was the only one, or when it left the association
    unable to carry anything."""
    contexts = [e for e in seen if e.kind == "context_rejected"]
    if sop_classes:
        return [e for e in contexts if e.sop_class_uid in sop_classes]
    if len(contexts) <= 1:
        return contexts
    return [e for e in contexts if e.status == NOTHING_ACCEPTED]


def _code(result: MoveResult | None) -> str:
    return "no final status" if result is None else f"0x{result.status:04X}"
