"""Why a C-MOVE failed, decided from what dicomgate saw itself before guessing at the PACS.

The PACS's status code alone sends the administrator to the wrong side: a pynetdicom-based
PACS answers 0xA801 also when *our* Portal AET rejected its storage association or the
only syntax it offered; Orthanc says 0xC000 for both an unknown destination and a
destination that refused it. The Portal AET records what it rejected
(state/dicom_events.py); those records, taken from the move's time window, come first.
"""

from __future__ import annotations

from ..config import DicomConfig
from ..state import DicomEvent
from .negotiation import NOTHING_ACCEPTED, REJECTION_QUIET_SECONDS
from .qr_association import PacsRefused, PacsUnavailable, this_host
from .scu import MoveResult

# Events this far before the C-MOVE started still count (clocks, association set-up).
SLACK_SECONDS = 2.0


def window_start(move_started: float, kind: str) -> float:
    """From when an event of `kind` is evidence for a C-MOVE started at `move_started`
    (a rejected context is recorded once per REJECTION_QUIET_SECONDS)."""
    if kind == "context_rejected":
        return move_started - REJECTION_QUIET_SECONDS
    return move_started - SLACK_SECONDS


def explain(exc: Exception, result: MoveResult | None, seen: list[DicomEvent],
            dicom: DicomConfig, where: str, sop_classes: set[str] | None = None) -> Exception:
    """The exception to raise for a failed C-MOVE: ours first, else the PACS's own.

    `sop_classes`: those of the instances asked for, when the PACS's C-FIND said; a
    rejected context counts only for one of them (a DCMTK-based PACS proposes every SOP
    class it knows on each association, retired ones we reject included)."""
    rejected = [e for e in seen if e.kind == "association_rejected"]
    if rejected:
        e = rejected[-1]
        return PacsRefused(
            f"the Portal AET {dicom.ae_title} rejected the storage association from "
            f"{e.calling_aet} ({e.peer}) during the C-MOVE: {e.reason}. The PACS sends "
            f"images from AE {e.calling_aet}: add it to dicom.allowed_calling_aets "
            f"(status from {where}: {_code(result)})")
    contexts = relevant_rejections(seen, sop_classes)
    if contexts and (result is None or result.completed == 0):
        what = "; ".join(f"{e.sop_class_uid} in [{e.transfer_syntaxes}]: {e.reason}"
                         for e in contexts[-5:])
        return PacsRefused(
            f"the Portal AET {dicom.ae_title} rejected what {where} offered for the C-MOVE "
            f"({what}). A private SOP class: add it to dicom.extra_sop_classes; a syntax: the "
            f"PACS must offer one the Portal AET accepts; see docs/operations.md (status "
            f"{_code(result)})")
    if result is not None and result.status == 0xA801:
        return PacsRefused(
            f"{where} answered 0xA801 (move destination unknown) and the Portal AET saw no "
            f"association from it during the C-MOVE: on the PACS, add AE {dicom.ae_title} "
            f"(dicom.ae_title), host {this_host(dicom.bind)}, port {dicom.port} (dicom.port) "
            "as a move destination; if it is there, check its host and port: the PACS "
            "could not reach this gateway")
    if result is not None and result.status == 0xA702 and result.completed == 0:
        return PacsUnavailable(
            f"{where} could not perform the C-MOVE's sub-operations (0xA702, out of "
            "resources); the Portal AET rejected nothing. DCMTK-based PACSs also answer this "
            "when they cannot convert an image to the syntax agreed: see the PACS log")
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


def refused_stores(seen: list[DicomEvent]) -> list[DicomEvent]:
    return [e for e in seen if e.kind == "store_refused"]


def _code(result: MoveResult | None) -> str:
    return "no final status" if result is None else f"0x{result.status:04X}"
