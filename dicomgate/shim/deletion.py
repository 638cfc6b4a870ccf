"""Image deletion (spec 4.5): `POST /getway/reportAndFilm/api/deleteImage`.

"Deletion-update": the cloud must end up holding what the PACS still holds. So: remove our
spool copies of the exam (nodes sharing a store: a `spool_purge` task bound to each other
node whose spool holds some removes them there) and mark them `deleted`, enqueue the
upstream `deletion` task (none when we never held anything for it: recorded and audited as
"nothing held"), then enqueue a `retrieve` re-check of the exam (after RECHECK_DELAY, which
also gathers a doctor's run of deletions into one re-check) so what remains at the PACS is
delivered again. The same call repeated (same exam, same operateDateTime) changes nothing and
answers the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote_to_bytes

import structlog

from ..privacy import mask_name
from ..spool_layout import remove_instances
from ..state import Store
from ..state.deletions import Deletion
from ..state.instances import Holdings
from ..state.kinds import Deletion as DeletionTask
from ..state.kinds import Retrieve, SpoolPurge
from .http import OK, Request, Response, reply
from .params import Params, no_chars
from .schema import Schema, text

log = structlog.get_logger("dicomgate.shim.deletion")

PATH = "/getway/reportAndFilm/api/deleteImage"

RECHECK_DELAY = 300.0
SIGNATURE_WINDOW = 300.0
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
                 "%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")


def parse_operate_time(value: str) -> str | None:
    """The canonical `yyyy-MM-dd HH:mm:ss` of a PACS time, or None."""
    text = re.sub(r"(Z|[+-]\d{2}:?\d{2})$", "", value.strip())
    for fmt in _TIME_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return None


class DeleteBody(Schema):
    """The body (JSON object or form fields); nothing is read from the query string, so
    every field is covered by the body the signature signs."""
    places: ClassVar[tuple[str, ...]] = ("body",)
    patientName: str = text("患者姓名")
    accessionNo: str = text("检查号")
    hospitalId: str = text("医保医疗机构代码 (default: this gateway's gateway.hospital_id)",
                           required=False)
    operateDoctorName: str = text("操作医生姓名")
    operateDateTime: str = text("操作时间 yyyy-MM-dd HH:mm:ss", 32)


def canonical_query(query_string: str) -> str:
    """The query string as signed: pairs decoded, re-encoded (RFC 3986 unreserved kept) and
    sorted, so the caller's choice of encoding does not change the signature."""
    items = []
    for piece in query_string.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        items.append((quote(unquote_to_bytes(key), safe="-_.~"),
                      quote(unquote_to_bytes(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(items))


def string_to_sign(timestamp: str, method: str, path: str, query_string: str,
                   body: bytes) -> bytes:
    """`<timestamp>\\n<METHOD>\\n<path>\\n<canonical query>\\n<raw body>`."""
    head = "\n".join((timestamp, method.upper(), path, canonical_query(query_string)))
    return head.encode("utf-8") + b"\n" + body


def signature(secret: str, timestamp: str, method: str, path: str, query_string: str,
              body: bytes) -> str:
    """hex HMAC-SHA256 over the whole request (headers X-Dicomgate-Timestamp and
    X-Dicomgate-Signature): method, path, canonical query and body."""
    return hmac.new(secret.encode(), string_to_sign(timestamp, method, path, query_string,
                                                    body), hashlib.sha256).hexdigest()


def signature_problem(secret: str, req: Request) -> str | None:
    ts = req.headers.get("x-dicomgate-timestamp", "").strip()
    sig = req.headers.get("x-dicomgate-signature", "").strip().lower().removeprefix("sha256=")
    if not ts or not sig:
        return ("signature required: headers X-Dicomgate-Timestamp (unix seconds) and "
                "X-Dicomgate-Signature (hex HMAC-SHA256 of timestamp, method, path, "
                "canonical query and body, each on its own line)")
    if not _TIMESTAMP.fullmatch(ts) or abs(time.time() - int(ts)) > SIGNATURE_WINDOW:
        return (f"X-Dicomgate-Timestamp {ts[:20]!r} not within {SIGNATURE_WINDOW:g}s of the "
                "gateway clock (expected unix seconds, digits 0-9)")
    expected = signature(secret, ts, req.method, req.path, req.query_string, req.body)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        return "X-Dicomgate-Signature does not match (shim.delete_secret)"
    return None


def _nothing_held(d: Deletion) -> bool:
    """We never held a study or instance for it: nothing to delete upstream (recorded,
    audited and answered as done; a `deletion` task naming nothing could only go dead)."""
    return not d.study_uids and not d.sop_uids


class DeletionEndpoint:
    def __init__(self, store: Store, spool: Path, served: tuple[str, ...], secret: str | None,
                 wake: Callable[[], None]):
        """`served`: the hospitalIds this gateway acts for, ours first (gateway.hospital_id,
        then group_hospital_ids); `secret`: the shared key requests must be signed with
        (None: unsigned accepted); `wake`: starts this process's workers on the tasks a
        deletion queues."""
        self.store = store
        self.spool = spool
        self.served = served
        self.secret = secret
        self.wake = wake

    def __call__(self, req: Request) -> Response:
        if self.secret:
            problem = signature_problem(self.secret, req)
            if problem:
                log.warning("deletion.unsigned", client=req.client, problem=problem)
                return reply(403, problem)
        fields, problems = req.fields(DeleteBody)
        p = Params(fields, self.served[0], self.served, problems)
        patient_name = p.required("patientName", "患者姓名")
        accession = p.required("accessionNo", "检查号",
                               check=no_chars("\\*?", "an exact accession number"))
        hospital = p.hospital()
        operator = p.required("operateDoctorName", "操作医生姓名")
        raw_time = p.required("operateDateTime", "操作时间 yyyy-MM-dd HH:mm:ss")
        when = parse_operate_time(raw_time) if raw_time else None
        if raw_time and when is None:
            p.add(f"operateDateTime invalid: {raw_time[:30]!r} (expected yyyy-MM-dd HH:mm:ss)")
        p.done()
        req.context.update(accession_no=accession, hospital_id=hospital)
        data = self.delete(hospital, accession, when or "", patient_name, operator, req.client)
        return reply(OK, None, data)

    def delete(self, hospital: str, accession: str, when: str, patient_name: str,
               operator: str, client: str) -> dict[str, Any]:
        with self.store.transaction():
            past = self.store.deletions.find(hospital, accession, when)
            if past is not None:
                self.store.deletions.repeated(past.id)
                past = self.store.deletions.find(hospital, accession, when)
                if not _nothing_held(past):
                    self._enqueue_deletion(past)  # no-op unless it was never queued
                files = self.store.instances.still_deleted(past.sop_uids)
            else:
                exam = self.store.exams.get(hospital, accession)
                holdings = self.store.instances.holdings(
                    exam.id if exam else None, exam.study_uid if exam else None, accession,
                    unlinked_by_accession=hospital == self.served[0])
                self.store.instances.mark_deleted(holdings)
                self.store.deletions.record(
                    hospital_id=hospital, accession_no=accession, operate_time=when,
                    patient_name=patient_name, operator_name=operator, holdings=holdings,
                    client=client)
                past = self.store.deletions.find(hospital, accession, when)
                nothing = _nothing_held(past)
                if not nothing:  # else no upstream task: it could only go dead
                    self._enqueue_deletion(past)
                self._enqueue_recheck(past, holdings)
                self.store.audit.record(mask_name(operator), "image.delete",
                                        f"{hospital}:{accession}",
                                        "nothing_held" if nothing else "ok", {
                                            "operateDateTime": when, "client": client,
                                            "patientName": mask_name(patient_name),
                                            "studies": len(holdings.study_uids),
                                            "instances": len(holdings.instances),
                                            "deletionId": past.id})
                files = holdings.instances
            files = self._purge_elsewhere(past, files)
        removed = self._remove_files(files)
        if removed:
            self.store.deletions.files_removed(past.id, removed)
        self.wake()
        log.info("deletion.received", accession_no=accession, hospital_id=hospital,
                 deletion_id=past.id, studies=len(past.study_uids),
                 instances=len(past.sop_uids), files_removed=removed, repeat=past.requests > 1,
                 nothing_held=_nothing_held(past))
        return {"deletionId": past.id, "studies": len(past.study_uids),
                "instances": len(past.sop_uids), "filesRemoved": removed,
                "repeat": past.requests > 1, "nothingHeld": _nothing_held(past)}

    def _enqueue_deletion(self, d: Deletion) -> None:
        self.store.tasks.enqueue(
            DeletionTask(d.hospital_id, d.accession_no, tuple(d.study_uids),
                         tuple(d.sop_uids), d.operate_time, d.id),
            exam_id=d.exam_id)

    def _purge_elsewhere(self, d: Deletion,
                         files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Nodes sharing a store: files in another node's spool are removed there, by a
        task bound to that node; the ones in this node's spool are returned."""
        here = self.store.db.node
        others = sorted({f["node"] for f in files if f.get("node") not in (None, here)})
        for node in others:  # reopened: a repeated deletion purges again what is left
            self.store.tasks.enqueue(SpoolPurge(node, d.id), reopen=True, exam_id=d.exam_id)
        if others:
            log.info("deletion.purge_queued", deletion_id=d.id, nodes=others)
        return [f for f in files if f.get("node") in (None, here)]

    def _enqueue_recheck(self, d: Deletion, holdings: Holdings) -> None:
        base = Retrieve(hospital_id=d.hospital_id, accession_no=d.accession_no,
                        exam_id=holdings.exam_id, reason="deletion")
        for uid in holdings.study_uids:
            self.store.tasks.enqueue(replace(base, study_uid=uid), delay=RECHECK_DELAY,
                                     reopen=True, study_uid=uid, exam_id=holdings.exam_id)
        if not holdings.study_uids and holdings.exam_id is not None:
            self.store.tasks.enqueue(base, delay=RECHECK_DELAY, reopen=True,
                                     exam_id=holdings.exam_id)

    def _remove_files(self, instances: list[dict[str, Any]]) -> int:
        return remove_instances(self.spool, instances, log, "deletion")
