"""Changed content after delivery: an instance received again with the same SOP Instance UID
and other bytes, after the cloud may have stored the older version.

Many DICOM archives (Orthanc by default) keep the first version and answer a second STOW-RS
of the same UID with success, so "sent" proves nothing. For each such instance: if the cloud
already holds our version, nothing to do; else send it, and if the cloud still holds the
old one, ask it to delete that (POST /deletions, reason "replaced") and send again. If it
still holds the old version, the instance is `rejected` with what a person must do: never
reported delivered while the cloud holds other content (contract: docs/upstream-api.md).
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import structlog

from ..state import InstanceRow, Store
from ..state.names import InstanceState
from .dicomweb import DicomWebClient
from .errors import Refused
from .rest import RestClient, idempotency_key

log = structlog.get_logger("dicomgate.upstream")

PADDING = 0xFFFCFFFC  # Data Set Trailing Padding: no meaning, archives may drop it


def same_content(ours: bytes, theirs: bytes) -> bool:
    """The same data set, whatever File Meta Information each side wrote."""
    a = pydicom.dcmread(io.BytesIO(ours), force=True)
    b = pydicom.dcmread(io.BytesIO(theirs), force=True)
    for ds in (a, b):
        if PADDING in ds:
            del ds[PADDING]
    return a == b


class Replacer:
    def __init__(self, store: Store, client: DicomWebClient, rest: RestClient | None,
                 hospital_id: str):
        self.store = store
        self.client = client
        self.rest = rest
        self.hospital_id = hospital_id

    def run(self, study_uid: str, rows: list[InstanceRow]) -> int:
        """Handle the superseding rows among `rows` (state received); returns how many it
        handled (their state may have changed). Transient/Refused errors propagate."""
        old = self.store.instances.superseded([r.sop_uid for r in rows])
        handled = 0
        for row in rows:
            if row.sop_uid in old and row.path and Path(row.path).is_file():
                self._one(study_uid, row)
                handled += 1
        return handled

    def _one(self, study_uid: str, row: InstanceRow) -> int:
        ours = Path(row.path or "").read_bytes()
        held = self._held(study_uid, row)
        if held is None or same_content(ours, held):
            self.store.instances.replaced_in_cloud(row.sop_uid)  # normal upload does the rest
            return 1 if held is not None else 0
        self._send(row)
        if self._holds_ours(study_uid, row, ours):
            log.info("upload.replaced", study_uid=study_uid, sop_uid=row.sop_uid,
                     how="the cloud overwrote it on STOW-RS")
            return 1
        if self._delete_old(study_uid, row):
            self._send(row)
            if self._holds_ours(study_uid, row, ours):
                log.info("upload.replaced", study_uid=study_uid, sop_uid=row.sop_uid,
                         how="deleted the old version, then stored")
                return 1
        why = ("the cloud still holds an older version of this instance (same SOP Instance "
               "UID, other content): it did not overwrite it on STOW-RS"
               + (" nor delete it on POST /deletions" if self.rest else "")
               + f"; ask the cloud operator to remove SOP Instance {row.sop_uid}, then "
               f"`dicomgate tasks retry` the upload of study {study_uid}")
        self.store.instances.set_state([row.sop_uid], InstanceState.REJECTED, why)
        log.error("upload.replace_failed", study_uid=study_uid, sop_uid=row.sop_uid,
                  reason=why)
        return 0

    def _held(self, study_uid: str, row: InstanceRow) -> bytes | None:
        return self.client.instance(study_uid, row.series_uid or "", row.sop_uid)

    def _holds_ours(self, study_uid: str, row: InstanceRow, ours: bytes) -> bool:
        held = self._held(study_uid, row)
        if held is not None and same_content(ours, held):
            self.store.instances.replaced_in_cloud(row.sop_uid)
            return True
        return False

    def _send(self, row: InstanceRow) -> None:
        out = self.client.stow([(row.sop_uid, Path(row.path or ""))], {})
        if out.error is not None:
            raise out.error

    def _delete_old(self, study_uid: str, row: InstanceRow) -> bool:
        if self.rest is None:
            return False
        study = self.store.instances.study(study_uid) or {}
        deletion_id = f"replace:{row.sop_uid}:{(row.sha256 or '')[:16]}"
        body = {"deletionId": deletion_id, "hospitalId": self.hospital_id,
                "accessionNo": study.get("accession_no") or "", "reason": "replaced",
                "studyInstanceUids": [], "sopInstanceUids": [row.sop_uid]}
        key = idempotency_key(self.hospital_id, "replace", row.sop_uid, row.sha256 or "")
        try:
            reply = self.rest.post("/deletions", body, key)
        except Refused as exc:
            log.warning("upload.replace_delete_refused", study_uid=study_uid,
                        sop_uid=row.sop_uid, code=exc.status, reason=exc.reason)
            return False
        log.info("upload.old_version_deleted", study_uid=study_uid, sop_uid=row.sop_uid,
                 cloud=reply.message)
        return True
