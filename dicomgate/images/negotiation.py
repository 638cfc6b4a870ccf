"""How the Portal AET negotiates with a sender: which transfer syntax it accepts per
presentation context, how large a PDU it lets the sender send, and a record of every
presentation context it rejects.

- **The sender's order wins.** pynetdicom, as an acceptor, takes the first of *its own*
  supported syntaxes that the requestor proposed; a PACS proposing [JPEG lossless,
  explicit, implicit] in one context would then have to decompress (a lossy JPEG would be
  re-encoded). The standard SCP behaviour is the requestor's first acceptable syntax, so
  before negotiation (EVT_REQUESTED, the association's own copy of the supported contexts)
  each proposed SOP class's syntaxes are put in the order the sender proposed them.
- **A bounded PDU.** A sender may fill each PDU up to the size we announce; pynetdicom
  holds a whole PDU in memory (several copies while decoding), so "unlimited" lets a
  pynetdicom-based PACS send a 200 MB object as one PDU and the receiver peak at ~4x the
  object. MAX_PDU keeps memory flat for any object size from any sender (bench/pdu.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from pydicom import uid as uids
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext

from . import pynetdicom_tuning

log = structlog.get_logger("dicomgate.images.negotiation")

# Accepted as sent: every standard syntax whose data travels inside the dataset.
# pynetdicom's defaults are the uncompressed ones only, which would force the PACS to
# transcode (or fail) compressed studies. The JPIP syntaxes are left out on purpose: their
# pixel data is a URL on a hospital server the cloud cannot reach.
TRANSFER_SYNTAXES: list[str] = [
    uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian, uids.ExplicitVRBigEndian,
    uids.JPEGBaseline8Bit, uids.JPEGExtended12Bit, uids.JPEGLossless, uids.JPEGLosslessSV1,
    uids.JPEGLSLossless, uids.JPEGLSNearLossless, uids.JPEG2000Lossless, uids.JPEG2000,
    uids.JPEG2000MCLossless, uids.JPEG2000MC,
    uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL, uids.HTJ2K, uids.RLELossless,
    uids.MPEG2MPML, uids.MPEG2MPMLF, uids.MPEG2MPHL, uids.MPEG2MPHLF,
    uids.MPEG4HP41, uids.MPEG4HP41F, uids.MPEG4HP41BD, uids.MPEG4HP41BDF,
    uids.MPEG4HP422D, uids.MPEG4HP422DF, uids.MPEG4HP423D, uids.MPEG4HP423DF,
    uids.MPEG4HP42STEREO, uids.MPEG4HP42STEREOF, uids.HEVCMP51, uids.HEVCM10P51,
    uids.SMPTEST211020UncompressedProgressiveActiveVideo,
    uids.SMPTEST211020UncompressedInterlacedActiveVideo, uids.SMPTEST211030PCMDigitalAudio,
]

# Storage SOP classes pynetdicom leaves out of AllStoragePresentationContexts (retired or
# trial): archives still hold such images (old ultrasound and nuclear medicine above all),
# and a study is complete only when they arrive too.
RETIRED_STORAGE: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.3",      # Ultrasound Multi-frame Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.5",      # Nuclear Medicine Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.6",      # Ultrasound Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.12.3",   # X-Ray Angiographic Bi-Plane Image Storage
    "1.2.840.10008.5.1.4.1.1.9.1",    # Waveform Storage - Trial
    "1.2.840.10008.5.1.4.1.1.77.1",   # VL Image Storage - Trial
    "1.2.840.10008.5.1.4.1.1.77.2",   # VL Multi-frame Image Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.1",   # Text SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.2",   # Audio SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.3",   # Detail SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.4",   # Comprehensive SR Storage - Trial
)

# A sender proposes the same contexts on every association: a rejection is logged and
# recorded once per sender, SOP class and syntaxes in this window.
REJECTION_QUIET_SECONDS = 600.0

NOTHING_ACCEPTED = "nothing accepted"  # dicom_events.status of such a context_rejected

# The largest PDU the Portal AET lets a sender send (A-ASSOCIATE-AC Maximum Length).
# Measured in bench/pdu.py (bench/README.md): 256 KB receives as fast as unlimited and
# keeps the receiver's peak RSS flat whatever the object size.
MAX_PDU = 256 * 1024


def sender_order(rq_contexts: list[PresentationContext]) -> dict[str, list[str]]:
    """Per proposed SOP class, its transfer syntaxes in the order the sender proposed them
    (contexts in ID order; a syntax repeated in a later context keeps its first place)."""
    order: dict[str, list[str]] = {}
    for cx in sorted(rq_contexts, key=lambda c: c.context_id or 0):
        seen = order.setdefault(str(cx.abstract_syntax), [])
        seen.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in seen)
    return order


def prefer_sender_order(event: evt.Event) -> None:
    """EVT_REQUESTED: give this association its own supported contexts with the sender's
    syntax order for each SOP class it proposes, so negotiation accepts the first proposed
    syntax we support, per context. Copy on write: the other contexts stay the list every
    association shares (scp.SharedContexts), which is never modified."""
    proposed = event.assoc.requestor.primitive.presentation_context_definition_list
    wanted = sender_order(proposed)
    contexts = list(event.assoc.acceptor.supported_contexts)
    for i, cx in enumerate(contexts):
        theirs = wanted.get(str(cx.abstract_syntax))
        if not theirs:
            continue
        ours = {str(ts): ts for ts in cx.transfer_syntax}
        first = [ts for ts in theirs if ts in ours]
        order = first + [ts for ts in ours if ts not in first]
        if order == list(ours):
            continue  # already in the sender's order: nothing to copy
        own = PresentationContext()
        own.abstract_syntax = cx.abstract_syntax
        # The UIDs are ours, validated once (tens of ms of CPU per association saved).
        pynetdicom_tuning.set_syntaxes_checked_once(own, [ours[ts] for ts in order])
        own.scu_role, own.scp_role = cx.scu_role, cx.scp_role
        contexts[i] = own
    event.assoc.acceptor.supported_contexts = contexts


def rejected_contexts(event: evt.Event) -> list[tuple[str, list[str], str]]:
    """(SOP class, syntaxes as proposed, why) for each context the association rejected."""
    proposed = {cx.context_id: cx for cx in
                event.assoc.requestor.primitive.presentation_context_definition_list}
    supported = {str(cx.abstract_syntax) for cx in event.assoc.acceptor.supported_contexts}
    out = []
    for cx in event.assoc.rejected_contexts:
        rq = proposed.get(cx.context_id)
        sop_class = str(cx.abstract_syntax)
        syntaxes = [str(ts) for ts in (rq.transfer_syntax if rq else cx.transfer_syntax)]
        if sop_class not in supported:
            why = (f"SOP class {_name(sop_class)} is not accepted by the Portal AET (a "
                   "private one can be added to dicom.extra_sop_classes)")
        else:
            why = (f"none of the transfer syntaxes {', '.join(_name(t) for t in syntaxes)} "
                   f"is accepted by the Portal AET")
        out.append((sop_class, syntaxes, why))
    return out


def storage_sop_classes() -> list[str]:
    from pynetdicom import AllStoragePresentationContexts

    return [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts] + list(
        RETIRED_STORAGE)


def register_private_storage(sop_classes: tuple[str, ...]) -> None:
    """Let pynetdicom dispatch C-STOREs of SOP classes it does not know (dicom.extra_sop_classes,
    e.g. Siemens CSA Non-Image) to the storage handler: `sop_class.register_uid`, its public
    way to add a private SOP class."""
    from pynetdicom.service_class import StorageServiceClass
    from pynetdicom.sop_class import register_uid, uid_to_service_class

    for uid in sop_classes:
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, "PrivateStorage_" + uid.replace(".", "_"), StorageServiceClass)


def on_accepted(record: Callable[..., None]) -> Callable[[evt.Event], None]:
    """EVT_ACCEPTED handler: log and record every rejected presentation context (once per
    sender, SOP class and syntaxes in REJECTION_QUIET_SECONDS)."""
    last: dict[tuple[str, str, tuple[str, ...]], float] = {}
    lock = threading.Lock()

    def first_in_a_while(key: tuple[str, str, tuple[str, ...]]) -> bool:
        now = time.monotonic()
        with lock:
            if now - last.get(key, -REJECTION_QUIET_SECONDS) < REJECTION_QUIET_SECONDS:
                return False
            last[key] = now
            return True

    def handler(event: evt.Event) -> None:
        rq = event.assoc.requestor
        calling = (rq.ae_title or "").strip()
        # "nothing accepted": this association could carry nothing, whatever it was for
        status = None if event.assoc.accepted_contexts else NOTHING_ACCEPTED
        for sop_class, syntaxes, why in rejected_contexts(event):
            if not first_in_a_while((calling, sop_class, tuple(syntaxes))):
                continue
            log.warning("association.context_rejected", calling_aet=calling,
                        sop_class_uid=sop_class, sop_class=_name(sop_class),
                        transfer_syntaxes=syntaxes, reason=why)
            record("context_rejected", why, calling_aet=calling,
                   peer=f"{rq.address}:{rq.port}", sop_class_uid=sop_class,
                   transfer_syntaxes=syntaxes, status=status)

    return handler


def _name(uid: str) -> str:
    """'JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)'; the UID alone if unknown."""
    name = uids.UID(uid).name
    return uid if not name or name == uid else f"{name} ({uid})"
