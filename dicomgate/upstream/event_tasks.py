"""Task handlers for reports and events: `push_report`, `withdraw`, `deletion`."""

from __future__ import annotations

from typing import Any

import structlog

from ..state import Store, Task
from ..state.kinds import Deletion, PushReport, Withdraw
from ..state.names import StudyState
from ..tasks import Fatal, RetryLater
from .errors import Refused, Transient
from .rest import Reply, RestClient, idempotency_key

log = structlog.get_logger("dicomgate.upstream")


class EventHandlers:
    def __init__(self, store: Store, rest: RestClient, hospital_id: str):
        self.store = store
        self.rest = rest
        self.hospital_id = hospital_id

    # -- push_report ----------------------------------------------------------------------
    def push_report(self, work: PushReport, task: Task) -> str:
        exam_id, version = work.exam_id, work.version
        exam = self.store.exams.get_by_id(exam_id)
        if exam is None:
            raise Fatal(f"exam {exam_id} is not in the state store: nothing to send")
        if exam.state in ("withdrawn", "deleted"):
            return f"skipped: exam is {exam.state}"
        if exam.report_version > version:
            return f"skipped: superseded by version {exam.report_version}"
        ver = self.store.exams.version(exam_id, version)
        if ver is None:
            raise Fatal(f"exam {exam_id} has no report version {version} in exam_versions")
        body = dict(ver["record"])
        body.update(hospitalId=exam.hospital_id, accessionNo=exam.accession_no,
                    reportVersion=version)
        if not body.get("studyInstanceUid") and exam.study_uid:
            body["studyInstanceUid"] = exam.study_uid
        if ver.get("source_type"):
            body.setdefault("sourceType", str(ver["source_type"]))
        reply = self._send(task, "/reports", body, str(version))
        self.store.exams.set_reported(exam_id)
        log.info("report.pushed", exam_id=exam_id, version=version,
                 accession_no=exam.accession_no, replayed=reply.replayed)
        return f"cloud: {reply.message or 'ok'}"

    # -- withdraw -----------------------------------------------------------------------------
    def withdraw(self, work: Withdraw, task: Task) -> str:
        accession = work.accession_no
        studies = self.store.instances.studies_of_exam(work.exam_id, accession)
        body = {"hospitalId": work.hospital_id or self.hospital_id, "accessionNo": accession,
                "refundTime": work.refund_time, "studyInstanceUids": studies}
        reply = self._send(task, "/withdrawals", body, str(work.refund_time or ""))
        for uid in studies:
            study = self.store.instances.study(uid)
            if study and study["state"] != "deleted":
                self.store.instances.set_study(uid, state=StudyState.WITHDRAWN)
        log.info("exam.withdrawn_upstream", accession_no=accession, studies=len(studies))
        return f"cloud: {reply.message or 'ok'} ({len(studies)} study(ies) withdrawn)"

    # -- deletion -----------------------------------------------------------------------------
    def deletion(self, work: Deletion, task: Task) -> str:
        body = {"deletionId": work.deletion_id, "hospitalId": work.hospital_id or self.hospital_id,
                "accessionNo": work.accession_no,
                "studyInstanceUids": list(work.study_uids),
                "sopInstanceUids": list(work.sop_uids), "operateTime": work.operate_time}
        if not body["studyInstanceUids"] and not body["sopInstanceUids"]:
            raise Fatal(f"deletion {task.key} names no study_uids and no sop_uids")
        reply = self._send(task, "/deletions", body, str(body["deletionId"]))
        log.info("deletion.sent", accession_no=body["accessionNo"],
                 studies=len(body["studyInstanceUids"]), instances=len(body["sopInstanceUids"]))  # type: ignore[arg-type]
        return f"cloud: {reply.message or 'ok'}"

    # -- common -------------------------------------------------------------------------------
    def _send(self, task: Task, path: str, body: dict[str, Any], disc: str) -> Reply:
        key = idempotency_key(body.get("hospitalId") or self.hospital_id, task.kind, task.key,
                              disc)
        try:
            reply = self.rest.post(path, body, key)
        except Transient as exc:
            self.store.delivery.log_send(task.kind, task.key, key, None, "retry", str(exc))
            raise RetryLater(str(exc), after=exc.retry_after) from None
        except Refused as exc:
            self.store.delivery.log_send(task.kind, task.key, key, exc.status, "refused",
                                         exc.reason)
            raise Fatal(f"the cloud refused {path} for {task.key}: {exc.reason} (code "
                        f"{exc.status}); fix the data or ask the cloud operator, then "
                        f"`dicomgate tasks retry {task.id}`") from None
        self.store.delivery.log_send(task.kind, task.key, key, reply.status, "ok", reply.message)
        return reply

