"""The `upload` task: send what the spool holds of a study, then confirm it by QIDO-RS.

The worker that runs one upload takes the other due ones with it (up to
`upstream.batch_max_studies`, see batch_claims.py): their instances share STOW-RS requests
and one QIDO-RS request confirms the studies ready together (upload_rounds.py). Each task
still ends on its own: a study with a failed instance retries alone.

Pipelined: the task runs while the study is still arriving (images re-opens it as
instances land). A study still being retrieved is sent once it completes, or earlier when
enough of it has arrived to fill a good part of a request, or after a short wait. A study
is `delivered` only when the cloud lists every instance the PACS had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ..config import UpstreamConfig
from ..state import Store, Task
from ..state.kinds import Deletion, Upload
from ..state.names import InstanceState, StudyState, TaskState
from ..tasks import Batching, RetryLater
from .batch_claims import BatchClaims
from .dicomweb import DicomWebClient
from .errors import Refused, Transient
from .replace import Replacer
from .stow_batches import Uploader, UploadSummary
from .upload_rounds import Rounds

log = structlog.get_logger("dicomgate.upstream")

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
                 cfg: UpstreamConfig, replacer: Replacer | None = None,
                 pool: Batching | None = None,
                 stopping: Callable[[], bool] = lambda: False):
        self.store = store
        self.client = client
        self.uploader = uploader
        self.cfg = cfg
        self.replacer = replacer or Replacer(store, client, None, "")
        self.pool = pool  # the worker pool; None: each task alone (no other is claimed)
        self.stopping = stopping  # the daemon is stopping: take no other task along
        self.batching = pool is not None and cfg.batch_max_studies > 1

    def __call__(self, work: Upload, task: Task) -> str:
        early = self.check(work.study_uid, self.deletions())
        if isinstance(early, Exception):
            raise early
        if early is not None:
            return early
        claims = None
        if self.batching and task.lease_owner and self.pool is not None:
            claims = BatchClaims(self.pool)
        try:
            outcome = Rounds(self, task, claims).run()
        finally:
            if claims is not None:
                claims.close()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def check(self, uid: str, deletions: set[str]) -> str | Exception | None:
        """What ends a study's task before anything is sent; None: go on."""
        study = self.store.instances.study(uid)
        if study is None:
            return "nothing in the spool for this study"
        if study["state"] in SKIP_STUDY_STATES:
            return f"skipped: study is {study['state']}"
        if uid in deletions:
            # Deletion-update: the cloud must drop the old copy before it gets what the
            # PACS still holds, or the deletion would remove the re-uploaded images.
            return RetryLater(f"a deletion of study {uid} has not reached the cloud yet: "
                              "uploading after it", after=30)
        return None

    def deletions(self) -> set[str]:
        return {uid for state in (TaskState.PENDING, TaskState.RUNNING)
                for t in self.store.tasks.list(state=state, kind=Deletion.kind)
                if isinstance(t.work, Deletion) for uid in t.work.study_uids}

    @staticmethod
    def as_retry(exc: Transient | Refused) -> RetryLater:
        if isinstance(exc, Transient):
            return RetryLater(str(exc), after=exc.retry_after)
        return RetryLater(f"the cloud refused a DICOMweb request ({exc}); check "
                          "upstream.dicomweb_url", after=600)

    # -- QIDO-RS ------------------------------------------------------------------------
    def confirm(self, uid: str) -> Confirmation:
        """QIDO-RS the study: listed instances become delivered, lost ones go again."""
        return self.confirm_many([uid])[uid]

    def confirm_many(self, uids: list[str]) -> dict[str, Confirmation]:
        """One QIDO-RS request for all of `uids` where the cloud does list matching."""
        if not uids:
            return {}
        listed = (self.client.studies_sop_uids(uids) if len(uids) > 1
                  else {uids[0]: self.client.study_sop_uids(uids[0])})
        return {uid: self._apply(uid, listed.get(uid, set())) for uid in uids}

    def _apply(self, uid: str, in_cloud: set[str]) -> Confirmation:
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

    # -- the end of one study's task --------------------------------------------------------
    def finish(self, uid: str, total: UploadSummary, conf: Confirmation) -> str:
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

    @staticmethod
    def arriving(uid: str, total: UploadSummary) -> str:
        """A study whose retrieve is under way: its end queues this task again, and that
        run confirms (one QIDO-RS per study, not one per pass)."""
        return (f"sent {total.uploaded} ({total.uploaded_bytes / 1e6:.1f} MB); study is "
                "retrieving: confirmed once its retrieve completes")


def _sent_unheard(attempt: dict | None, row_updated_at: float) -> bool:
    """This exact content left for the cloud and we never recorded the answer."""
    return bool(attempt) and attempt.get("last_status") in ("sending", "retry") and \
        attempt["last_at"] >= row_updated_at
