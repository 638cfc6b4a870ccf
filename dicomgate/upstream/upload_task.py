"""The `upload` task: send what the spool holds of a study, then confirm it by QIDO-RS.

Pipelined: the task runs while the study is still arriving (images re-opens it as
instances land) and picks up newcomers round after round. A study is `delivered` only
when the cloud lists every instance the PACS had.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from ..config import UpstreamConfig
from ..state import Store, Task
from ..state.kinds import Deletion, Upload
from ..state.names import InstanceState, StudyState, TaskState
from ..tasks import RetryLater
from .dicomweb import DicomWebClient
from .errors import Refused, Transient
from .replace import Replacer
from .stow_batches import Uploader, UploadSummary

log = structlog.get_logger("dicomgate.upstream")

MAX_RESENDS = 3          # QIDO-RS says lost, sent again, at most this often per run
MAX_RUN_SECONDS = 600.0  # a study still arriving after this: the task runs again
SKIP_STUDY_STATES = ("withdrawn", "deleted")


@dataclass
class Confirmation:
    in_cloud: int = 0
    delivered: int = 0      # instances of ours the cloud lists
    newly: int = 0          # turned delivered by this check
    requeued: int = 0       # missing from the cloud: to be sent again
    waiting: int = 0        # sent moments ago and not yet listed


class UploadHandler:
    def __init__(self, store: Store, client: DicomWebClient, uploader: Uploader,
                 cfg: UpstreamConfig, replacer: Replacer | None = None):
        self.store = store
        self.client = client
        self.uploader = uploader
        self.cfg = cfg
        self.replacer = replacer or Replacer(store, client, None, "")

    def __call__(self, work: Upload, _task: Task) -> str:
        uid = work.study_uid
        study = self.store.instances.study(uid)
        if study is None:
            return "nothing in the spool for this study"
        if study["state"] in SKIP_STUDY_STATES:
            return f"skipped: study is {study['state']}"
        if self._deletion_pending(uid):
            # Deletion-update: the cloud must drop the old copy before it gets what the
            # PACS still holds, or the deletion would remove the re-uploaded images.
            raise RetryLater(f"a deletion of study {uid} has not reached the cloud yet: "
                             "uploading after it", after=30)
        try:
            return self._run(uid)
        except Transient as exc:
            raise RetryLater(str(exc), after=exc.retry_after) from None
        except Refused as exc:
            raise RetryLater(f"the cloud refused a DICOMweb request ({exc}); check "
                             "upstream.dicomweb_url", after=600) from None

    def _deletion_pending(self, uid: str) -> bool:
        return any(isinstance(t.work, Deletion) and uid in t.work.study_uids
                   for state in (TaskState.PENDING, TaskState.RUNNING)
                   for t in self.store.tasks.list(state=state, kind=Deletion.kind))

    def _run(self, uid: str) -> str:
        total = UploadSummary()
        conf = Confirmation()
        if self.store.delivery.ever_sent(uid):
            conf = self.confirm(uid)  # after a crash: skip what already reached the cloud
        deadline = time.monotonic() + MAX_RUN_SECONDS
        resends = 0
        while True:
            rows = self.store.instances.of_study(uid, (InstanceState.RECEIVED,))
            if rows and self.replacer.run(uid, rows):  # same UID, new content: see replace.py
                rows = self.store.instances.of_study(uid, (InstanceState.RECEIVED,))
            if rows:
                s = self.uploader.upload(uid, rows)
                self._add(total, s)
                log.info("upload.sent", study_uid=uid, instances=s.uploaded,
                         bytes=s.uploaded_bytes, rejected=s.rejected, requests=s.requests,
                         seconds=round(s.seconds, 3))
                if s.error is not None:
                    raise RetryLater(f"{s.error} ({s.uploaded} of {s.total} instances sent "
                                     "this time)", after=s.retry_after)
                if time.monotonic() < deadline:
                    continue  # the study may still be arriving: send newcomers first
            conf = self.confirm(uid)
            if conf.requeued and resends < MAX_RESENDS and time.monotonic() < deadline:
                resends += 1
                continue
            if not self.store.instances.of_study(uid, (InstanceState.RECEIVED,)) or \
                    time.monotonic() >= deadline:
                break
        return self._finish(uid, total, conf)

    @staticmethod
    def _add(total: UploadSummary, s: UploadSummary) -> None:
        total.uploaded += s.uploaded
        total.uploaded_bytes += s.uploaded_bytes
        total.rejected += s.rejected
        total.seconds += s.seconds

    def confirm(self, uid: str) -> Confirmation:
        """QIDO-RS the study: listed instances become delivered, lost ones go again."""
        in_cloud = self.client.study_sop_uids(uid)
        rows = self.store.instances.of_study(uid, (InstanceState.RECEIVED, InstanceState.UPLOADED,
                                                    InstanceState.DELIVERED))
        sent = self.store.delivery.attempts([r.sop_uid for r in rows if r.state == "received"])
        now = time.time()
        out = Confirmation(in_cloud=len(in_cloud))
        newly, requeue = [], []
        for r in rows:
            listed = r.sop_uid in in_cloud
            if r.state == "delivered":
                (requeue.append(r.sop_uid) if not listed else None)
            elif r.state == "uploaded":
                if listed:
                    newly.append(r.sop_uid)
                elif now - r.updated_at >= self.cfg.confirm_delay:
                    requeue.append(r.sop_uid)
                else:
                    out.waiting += 1
            elif listed and _sent_unheard(sent.get(r.sop_uid), r.updated_at):
                newly.append(r.sop_uid)  # sent before a crash, never heard back: it arrived
        with self.store.transaction():
            self.store.instances.set_state(newly, InstanceState.DELIVERED)
            self.store.instances.set_state(requeue, InstanceState.RECEIVED,
                                           "not listed by the cloud: sending again")
        out.newly, out.requeued = len(newly), len(requeue)
        out.delivered = sum(1 for r in rows if r.sop_uid in in_cloud)
        if requeue:
            log.warning("upload.not_in_cloud", study_uid=uid, instances=len(requeue))
        return out

    def _finish(self, uid: str, total: UploadSummary, conf: Confirmation) -> str:
        counts = self.store.instances.study_counts(uid)
        study = self.store.instances.study(uid) or {}
        done = counts.get("delivered", 0) + counts.get("purged", 0)
        rejected = counts.get("rejected", 0)
        expected = study.get("expected_count")
        sent = f"sent {total.uploaded} ({total.uploaded_bytes / 1e6:.1f} MB)"
        if conf.waiting:
            raise RetryLater(f"{sent}; {conf.waiting} instance(s) not yet listed by the "
                             "cloud's QIDO-RS: checking again", after=self.cfg.confirm_delay)
        if counts.get("received", 0) or counts.get("uploaded", 0):
            raise RetryLater(f"{sent}; {counts.get('received', 0)} still to send, "
                             f"{counts.get('uploaded', 0)} unconfirmed", after=1.0)
        tail = f"{done} delivered" + (f", {rejected} rejected (see dicomgate upload-state "
                                      f"{uid})" if rejected else "")
        if study.get("state") == "complete" and not rejected and \
                (expected is None or conf.in_cloud >= expected):
            self.store.instances.set_study(uid, state=StudyState.DELIVERED)
            log.info("study.delivered", study_uid=uid, instances=done, expected=expected)
            return f"{sent}; {tail}; study delivered"
        if study.get("state") == "complete" and expected is not None and conf.in_cloud < expected:
            return f"{sent}; {tail}; the cloud lists {conf.in_cloud} of {expected} expected"
        return f"{sent}; {tail}; study is {study.get('state')}"


def _sent_unheard(attempt: dict | None, row_updated_at: float) -> bool:
    """This exact content left for the cloud and we never recorded the answer."""
    return bool(attempt) and attempt.get("last_status") in ("sending", "retry") and \
        attempt["last_at"] >= row_updated_at
