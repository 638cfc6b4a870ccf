"""The rounds of one upload batch: the studies of the claimed upload tasks, sent together
and confirmed together, each study's task ended on its own.

A round reads what each study has to send, sends it all (STOW-RS requests may mix
studies), then confirms by one QIDO-RS request every study that is ready: complete and
wholly sent. A study still being retrieved waits (at most `upstream.batch_wait`, unless
1/EAGER_SHARE of a request's bytes has arrived) so a small study goes in one request once
its retrieve completes; after that wait it is sent as it arrives, and it ends unconfirmed
when a round finds nothing new: its retrieve's end queues the task again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ..state import InstanceRow, Task
from ..state.kinds import Upload
from ..state.names import InstanceState
from ..tasks import RetryLater
from .errors import Refused, Transient
from .stow_batches import UploadSummary

if TYPE_CHECKING:
    from .batch_claims import BatchClaims
    from .upload_task import Confirmation, UploadHandler

log = structlog.get_logger("dicomgate.upstream")

MAX_RESENDS = 3          # QIDO-RS says lost, sent again, at most this often per run
MAX_RUN_SECONDS = 600.0  # a study still arriving after this: the task runs again
EAGER_SHARE = 4  # a study being retrieved is sent once 1/4 of batch_max_bytes has arrived
POLL = 0.05              # seconds between looks while a study waits
ARRIVING = "retrieving"

Outcome = str | Exception


@dataclass
class _Study:
    uid: str
    task: Task
    joined: float
    total: UploadSummary = field(default_factory=UploadSummary)
    conf: Confirmation | None = None
    resends: int = 0
    rows: list[InstanceRow] = field(default_factory=list)  # to send this round
    arriving: bool = False
    waits: bool = False  # held back this round

    def add(self, s: UploadSummary) -> None:
        self.total.uploaded += s.uploaded
        self.total.uploaded_bytes += s.uploaded_bytes
        self.total.rejected += s.rejected
        self.total.seconds += s.seconds


class Rounds:
    def __init__(self, handler: UploadHandler, task: Task, claims: BatchClaims | None):
        self.h = handler
        self.store = handler.store
        self.cfg = handler.cfg
        self.claims = claims
        self.primary = task
        self.owner = task.lease_owner or ""
        self.active: dict[str, _Study] = {}
        self.outcome: Outcome | None = None  # the primary task's
        self._join([task])

    def run(self) -> Outcome:
        """Rounds until every study's task has ended; the primary task's outcome."""
        self._recover(list(self.active.values()))
        for _ in range(1_000_000):  # bounded: each study leaves by MAX_RUN_SECONDS
            if not self.active:
                break
            self._round()
        for s in list(self.active.values()):  # unreachable in practice; never lose a task
            self._end(s, RetryLater("upload batch ended early: running again", after=1.0))
        return self.outcome if self.outcome is not None else "nothing to do"

    # -- membership -------------------------------------------------------------------------
    def _join(self, tasks: list[Task]) -> list[_Study]:
        now = time.monotonic()
        out = []
        for t in tasks:
            uid = t.work.study_uid if isinstance(t.work, Upload) else None
            if uid is None or uid in self.active:  # cannot happen: one task per study
                self._end(_Study(uid or "?", t, now), RetryLater("upload batch: duplicate",
                                                                   after=1.0))
                continue
            s = _Study(uid, t, now)
            self.active[uid] = s
            out.append(s)
        return out

    def _more(self) -> list[_Study]:
        """Due upload tasks join the batch (while it has room); those that end before
        anything is sent (skipped, waiting for a deletion) end here."""
        room = self.cfg.batch_max_studies - len(self.active)
        if self.claims is None or room <= 0 or self.h.stopping() or self.outcome is not None:
            return []
        got = self.claims.claim(room)
        if not got:
            return []
        deletions = self.h.deletions()
        keep = []
        for t in got:
            early = self.h.check(t.work.study_uid, deletions) if isinstance(
                t.work, Upload) else RetryLater("not an upload task")
            if early is None:
                keep.append(t)
            else:
                self._end(_Study("?", t, time.monotonic()), early)
        joined = self._join(keep)
        self._recover(joined)
        return joined

    def _recover(self, studies: list[_Study]) -> None:
        """After a crash: confirm first what may already have reached the cloud."""
        sent = [s for s in studies if self.store.delivery.ever_sent(s.uid)]
        if sent:
            self._confirm(sent)

    # -- one round ------------------------------------------------------------------------
    def _round(self) -> None:
        if self.outcome is not None:
            self._hand_back_arriving()
        studies = list(self.active.values())
        if not studies:
            return
        self.store.tasks.take_reruns([s.task.id for s in studies], self.owner)
        now = time.monotonic()
        for s in studies:
            self._read(s, now)
        if any(s.rows for s in self.active.values()):
            for s in self._more():
                self._read(s, now)
        self._send([s for s in self.active.values() if s.rows])
        ready, waiting = [], False
        for s in list(self.active.values()):
            if s.waits:
                waiting = True
            elif s.arriving and s.rows and now < self._deadline(s):
                pass  # newcomers may follow: look again first
            elif s.arriving:
                self._end(s, self.h.arriving(s.uid, s.total))
            else:
                ready.append(s)
        self._confirm(ready)
        for s in ready:
            self._settle(s)
        if waiting:
            time.sleep(POLL)

    def _read(self, s: _Study, now: float) -> None:
        try:
            rows = self.store.instances.of_study(s.uid, (InstanceState.RECEIVED,))
            if rows and self.h.replacer.run(s.uid, rows):  # same UID, new content
                rows = self.store.instances.of_study(s.uid, (InstanceState.RECEIVED,))
        except (Transient, Refused) as exc:
            s.rows, s.waits = [], False
            self._end(s, self.h.as_retry(exc))
            return
        study = self.store.instances.study(s.uid) or {}
        s.arriving = study.get("state") == ARRIVING
        s.waits = (s.arriving and bool(rows) and now < s.joined + self.cfg.batch_wait
                   and sum(r.size or 0 for r in rows) * EAGER_SHARE < self.cfg.batch_max_bytes)
        s.rows = [] if s.waits else rows

    def _send(self, studies: list[_Study]) -> None:
        if not studies:
            return
        sent = self.h.uploader.upload_studies([r for s in studies for r in s.rows])
        per = sent.studies
        log.info("upload.batch", studies=len(studies), requests=sent.requests,
                 instances=sum(len(s.rows) for s in studies),
                 bytes=sum(r.size or 0 for s in studies for r in s.rows),
                 seconds=round(sent.seconds, 3))
        for s in studies:
            got = per.get(s.uid) or UploadSummary()
            s.add(got)
            log.info("upload.sent", study_uid=s.uid, instances=got.uploaded,
                     bytes=got.uploaded_bytes, rejected=got.rejected, requests=got.requests,
                     studies_batched=len(studies), seconds=round(got.seconds, 3))
            if got.error is not None:
                self._end(s, RetryLater(f"{got.error} ({got.uploaded} of {got.total} "
                                        "instances sent this time)", after=got.retry_after))

    def _confirm(self, studies: list[_Study]) -> None:
        studies = [s for s in studies if s.uid in self.active]
        if not studies:
            return
        before = self.h.client.qido_requests()
        try:
            confs = self.h.confirm_many([s.uid for s in studies])
        except (Transient, Refused) as exc:
            for s in studies:
                self._end(s, self.h.as_retry(exc))
            return
        log.info("upload.confirmed", studies=len(studies),
                 requests=self.h.client.qido_requests() - before,
                 delivered=sum(confs[s.uid].delivered for s in studies),
                 requeued=sum(confs[s.uid].requeued for s in studies))
        for s in studies:
            s.conf = confs[s.uid]

    def _settle(self, s: _Study) -> None:
        """After a confirmation: send again what the cloud lost, or end the task."""
        if s.uid not in self.active or s.conf is None:
            return
        before = time.monotonic() < self._deadline(s)
        if s.conf.requeued and s.resends < MAX_RESENDS and before:
            s.resends += 1
            return
        if self.store.instances.of_study(s.uid, (InstanceState.RECEIVED,)) and before:
            return
        try:
            self._end(s, self.h.finish(s.uid, s.total, s.conf))
        except RetryLater as exc:
            self._end(s, exc)

    def _hand_back_arriving(self) -> None:
        """The first task has ended: its worker reports it only when the handler returns,
        so a study still being retrieved (which may take minutes) goes back to the queue
        for another worker instead of holding that report back."""
        for s in list(self.active.values()):
            if s.arriving and self.claims is not None:
                del self.active[s.uid]
                self.claims.give_back(s.task, "the batch's first study is done; this one "
                                      "is still being retrieved")

    @staticmethod
    def _deadline(s: _Study) -> float:
        return s.joined + MAX_RUN_SECONDS

    def _end(self, s: _Study, outcome: Outcome) -> None:
        """Record a study's task: the primary's is returned by the handler to its worker,
        the others' are written here."""
        if self.active.get(s.uid) is s:
            del self.active[s.uid]
        if s.task.id == self.primary.id:
            self.outcome = outcome
        elif self.claims is not None:
            self.claims.finish(s.task, outcome)
