"""The Portal AET: a pynetdicom storage SCP that writes what it receives to the spool.

Every storage SOP class, every common transfer syntax as it comes (no transcoding, no
pixel decoding): pynetdicom writes each dataset in chunks to a temp file on the spool's
file system, hashed as it is written (pynetdicom_tuning.py), and we rename it under its
final spool name.
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path
from typing import Any

import structlog
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from ..config import Config
from ..state.db import store_unwritable
from . import pynetdicom_tuning
from .ingest import Ingest, Malformed, Origin, OutOfSpace
from .negotiation import (
    MAX_PDU,
    TRANSFER_SYNTAXES,
    on_accepted,
    prefer_sender_order,
    register_private_storage,
    storage_sop_classes,
)

log = structlog.get_logger("dicomgate.images.scp")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_PROCESSING_FAILURE = 0x0110


def _end_associations(server: Any, drain: float) -> None:
    deadline = time.monotonic() + drain
    for assoc in server.active_associations:
        assoc.join(max(0.0, deadline - time.monotonic()))
    left = server.active_associations
    for assoc in left:
        assoc.abort()
    for assoc in left:  # its C-STORE handler may be committing: let it finish
        assoc.join(5.0)
    if left:
        log.warning("scp.associations_aborted", count=len(left), drain_seconds=drain,
                    reason="still open when the SCP stopped")


def allowed_calling_aets(config: Config) -> list[str]:
    aets = list(config.dicom.allowed_calling_aets)
    if config.pacs is not None:
        aets.insert(0, config.pacs.ae_title)
    return list(dict.fromkeys(aets))


class StorageSCP:
    """A long-running service (start/stop) listening on dicom.bind:dicom.port."""

    name = "storage SCP"

    def __init__(self, config: Config, ingest: Ingest, index: int = 0, shared_port: bool = False):
        self.config = config
        self.ingest = ingest
        self.index = index  # which of dicom.scp_processes this is
        self.shared_port = shared_port  # several processes accept on dicom.port
        self._server = None
        self._lock = threading.Lock()
        self.received = 0  # instances stored since start (for the CLI's temporary SCP)
        # each open association's record id (portal_associations)
        self._records: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    # -- life cycle -----------------------------------------------------------------------
    def build_ae(self) -> AE:
        d = self.config.dicom
        ae = AE(ae_title=d.ae_title)
        register_private_storage(d.extra_sop_classes)
        for sop_class in dict.fromkeys([*storage_sop_classes(), *d.extra_sop_classes]):
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        ae.require_calling_aet = allowed_calling_aets(self.config)
        ae.network_timeout = d.network_timeout
        ae.acse_timeout = d.network_timeout
        ae.dimse_timeout = d.network_timeout
        ae.maximum_associations = 32
        ae.maximum_pdu_size = MAX_PDU  # bounded: memory stays flat (negotiation.py)
        return ae

    def start(self, clean: str = "") -> None:
        """Listen. Temp files ending with `clean` left in the spool's incoming dir are
        removed first (all of them by default: nothing else writes there yet)."""
        d = self.config.dicom
        if not allowed_calling_aets(self.config):
            raise RuntimeError("no calling AE may send to the Portal AET: set pacs.ae_title "
                               "or dicom.allowed_calling_aets")
        gone = pynetdicom_tuning.missing()
        if gone:
            log.warning("pynetdicom.tuning_unavailable", missing=gone,
                        installed=pynetdicom_tuning.installed_version(),
                        measured_on=pynetdicom_tuning.MEASURED_ON,
                        effect="received datasets may be copied, not renamed, and answered "
                               "slower; install the pynetdicom range setup.cfg names")
        pynetdicom_tuning.memoise_uid_checks()
        pynetdicom_tuning.encode_store_responses()
        pynetdicom_tuning.receive_into(self.ingest.spool.incoming_dir(),
                                       suffix=pynetdicom_tuning.receiving_suffix(self.index),
                                       room=self.ingest.short_of_space)
        stale = self.ingest.spool.clean_incoming(clean)
        if stale:
            log.warning("spool.stale_removed", files=stale, reason="left by an earlier crash")
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_C_ECHO, lambda _e: STATUS_SUCCESS),
                    (evt.EVT_CONN_OPEN, pynetdicom_tuning.tune_connection),
                    (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_REQUESTED, prefer_sender_order),
                    (evt.EVT_RELEASED, self._on_ended("released")),
                    (evt.EVT_ABORTED, self._on_ended("aborted")),
                    (evt.EVT_CONN_CLOSE, self._on_ended("closed")),
                    (evt.EVT_ACCEPTED, on_accepted(self.ingest.note))]
        try:
            self._server = self._listen(self.build_ae(), handlers)
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {d.bind}:{d.port} for the Portal AET "
                               f"{d.ae_title}: {exc.strerror} (is another dicomgate or "
                               "storescp using the port? see dicom.port)") from None
        log.info("scp.listening", ae_title=d.ae_title, bind=d.bind, port=d.port,
                 calling_aets=allowed_calling_aets(self.config))

    def _listen(self, ae: AE, handlers: list) -> Any:
        d = self.config.dicom
        contexts = pynetdicom_tuning.SharedContexts(ae.supported_contexts)
        if not self.shared_port:
            return ae.start_server((d.bind, d.port), block=False, evt_handlers=handlers,
                                   contexts=contexts)
        server = ae.make_server((d.bind, d.port), contexts=contexts, evt_handlers=handlers,
                                server_class=pynetdicom_tuning.SharedPortServer)
        thread = threading.Thread(target=server.serve_forever, daemon=True,
                                  name=f"AcceptorServer-{self.index}")
        thread.start()
        pynetdicom_tuning.adopt_server(ae, server)  # as start_server does
        return server

    def stop(self, drain: float = 0.0) -> None:
        """Stop accepting associations; give open ones `drain` seconds to end, then abort
        them. A dataset cut off this way was never recorded (its temp file is removed at
        the next start) and the retrieve asks the PACS again for what is missing."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            _end_associations(server, drain)
        self.ingest.close()

    def health(self) -> str | None:
        if self._server is None:
            return "storage SCP is not listening"
        short = self.ingest.short_of_space()
        if short:
            return f"{short}: C-STORE answered 0xA700"
        return None

    # -- events ---------------------------------------------------------------------------
    def _on_requested(self, event: evt.Event) -> None:
        """Record the association before it is answered; a rejection this SCP will send
        (a calling or called AE it does not accept) is recorded now, so the record is
        complete before the PACS hears the answer."""
        rq = event.assoc.requestor
        calling = (rq.primitive.calling_ae_title or "").strip()
        peer = f"{rq.address}:{rq.port}"
        record = self.ingest.opened(calling, peer)
        if record is not None:
            self._records[event.assoc] = record
        reason = self._rejection(calling, (rq.primitive.called_ae_title or "").strip(),
                                 event.assoc.acceptor.ae_title.strip())
        if reason is not None:
            self.ingest.rejected(record, reason, calling_aet=calling, peer=peer)

    def _rejection(self, calling: str, requested: str, called: str) -> str | None:
        """Why pynetdicom will reject an association (the rules build_ae gave it)."""
        if calling not in allowed_calling_aets(self.config):
            return (f"calling AE {calling} is not allowed: add it to "
                    "dicom.allowed_calling_aets if it should send images")
        if requested != called:
            return f"called AE {requested} is not this gateway's AE {called}"
        return None

    def _on_rejected(self, event: evt.Event) -> None:
        rq = event.assoc.requestor
        calling = (rq.primitive.calling_ae_title or "").strip()
        requested = (rq.primitive.called_ae_title or "").strip()
        peer = f"{rq.address}:{rq.port}"
        reason = self._rejection(calling, requested, event.assoc.acceptor.ae_title.strip())
        if reason is None:  # not foreseen in _on_requested: record it now
            reason = "too many simultaneous associations"
            self.ingest.rejected(self._records.get(event.assoc), reason, calling_aet=calling,
                                 peer=peer)
        log.warning("association.rejected", calling_aet=calling, called_aet=requested,
                    peer=peer, reason=reason)

    def _on_ended(self, outcome: str):
        def handler(event: evt.Event) -> None:
            record = self._records.pop(event.assoc, None)
            if record is not None:
                self.ingest.ended(record, outcome)
        return handler

    def _origin(self, event: evt.Event) -> Origin:
        req = event.request
        aet = (getattr(req, "MoveOriginatorApplicationEntityTitle", None) or "").strip()
        msg_id = getattr(req, "MoveOriginatorMessageID", None)
        return Origin(self._records.get(event.assoc), aet or None,
                      int(msg_id) if msg_id is not None and aet else None)

    def _note_refused(self, event: evt.Event, status: str, reason: str) -> None:
        rq = event.assoc.requestor
        self.ingest.note("store_refused", reason, self._origin(event),
                         calling_aet=(rq.ae_title or "").strip(),
                         peer=f"{rq.address}:{rq.port}",
                         sop_class_uid=str(event.request.AffectedSOPClassUID),
                         transfer_syntaxes=[str(event.context.transfer_syntax)],
                         sop_uid=str(event.request.AffectedSOPInstanceUID), status=status)

    def _on_store(self, event: evt.Event) -> int:
        req = event.request
        sop_uid = str(req.AffectedSOPInstanceUID)
        calling = (event.assoc.requestor.ae_title or "").strip()
        path = Path(event.dataset_path)
        try:
            unwritten = pynetdicom_tuning.write_failure(path)
            if unwritten is not None:  # the disk filled while the dataset arrived
                path.unlink(missing_ok=True)
                raise OutOfSpace(unwritten)
            self.ingest.from_network(path, transfer_syntax=str(event.context.transfer_syntax),
                                     sop_class_uid=str(req.AffectedSOPClassUID),
                                     sop_uid=sop_uid, calling_aet=calling,
                                     digest=pynetdicom_tuning.digest_of(path),
                                     origin=self._origin(event))
        except OutOfSpace as exc:
            path.unlink(missing_ok=True)  # nothing half-kept on a file system that is short
            log.error("store.refused", sop_uid=sop_uid, calling_aet=calling, status="0xA700",
                      reason=str(exc), free_bytes=self.ingest.spool.free_bytes(),
                      min_free_disk=self.ingest.min_free_disk)
            self._note_refused(event, "0xA700", str(exc))
            return STATUS_OUT_OF_RESOURCES
        except Malformed as exc:
            kept = self.ingest.spool.quarantine(path, str(exc), {
                "sop_uid": sop_uid, "calling_aet": calling,
                "transfer_syntax": str(event.context.transfer_syntax)})
            log.error("store.quarantined", sop_uid=sop_uid, calling_aet=calling,
                      reason=str(exc), file=str(kept))
            self._note_refused(event, "0xC000", f"quarantined: {exc}")
            return STATUS_CANNOT_UNDERSTAND
        except Exception as exc:
            if store_unwritable(exc):  # cannot record it: refuse, the PACS sends it again
                log.error("store.refused", sop_uid=sop_uid, calling_aet=calling,
                          status="0xA700", reason=f"state store unusable: {exc}")
                return STATUS_OUT_OF_RESOURCES
            log.error("store.failed", sop_uid=sop_uid, calling_aet=calling,
                      error=f"{type(exc).__name__}: {exc}")
            self._note_refused(event, "0x0110", f"{type(exc).__name__}: {exc}")
            return STATUS_PROCESSING_FAILURE
        with self._lock:
            self.received += 1
        return STATUS_SUCCESS
