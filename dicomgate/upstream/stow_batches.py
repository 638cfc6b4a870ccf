"""Batches of spool files sent by STOW-RS, several requests in flight, outcomes recorded.

A batch may hold instances of several studies (`POST /studies` names none); the cloud's
answer is read per instance and counted per study. One thread pool per process
(`upstream.concurrency` requests in flight in total, whatever number of studies are
uploading); outcomes are written by the task's own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..config import UpstreamConfig
from ..state import InstanceRow, Store
from ..state.names import InstanceState
from .dicomweb import BatchOutcome, DicomWebClient
from .errors import Transient

log = structlog.get_logger("dicomgate.upstream")

Progress = Callable[[str, "UploadSummary"], None]


@dataclass
class UploadSummary:
    total: int = 0
    total_bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    rejected: int = 0
    requests: int = 0
    seconds: float = 0.0
    error: Transient | None = None
    retry_after: float | None = None

    def add_error(self, err: Transient) -> None:
        self.error = self.error or err
        if err.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, err.retry_after)


@dataclass
class Sent:
    """What one `upload_studies` call did: per study, and its STOW-RS requests."""
    studies: dict[str, UploadSummary] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0


@dataclass
class _Batch:
    rows: list[InstanceRow]
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(r.size or 0 for r in self.rows)


def make_batches(rows: list[InstanceRow], max_bytes: int,
                 max_count: int) -> list[list[InstanceRow]]:
    """Consecutive instances, at most `max_count` and `max_bytes` per batch (a bigger
    instance travels alone)."""
    out: list[list[InstanceRow]] = []
    cur: list[InstanceRow] = []
    cur_bytes = 0
    for row in rows:
        size = row.size or 0
        if cur and (len(cur) >= max_count or cur_bytes + size > max_bytes):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(row)
        cur_bytes += size
    if cur:
        out.append(cur)
    return out


class Uploader:
    def __init__(self, store: Store, client: DicomWebClient, cfg: UpstreamConfig,
                 progress: Progress | None = None):
        self.store = store
        self.client = client
        self.cfg = cfg
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.progress = progress  # the CLI shows batches as they finish

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency,
                                                thread_name_prefix="stow")
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def upload(self, study_uid: str, rows: list[InstanceRow]) -> UploadSummary:
        """Send one study's `rows` (state received); see `upload_studies`."""
        return self.upload_studies(rows).studies.get(study_uid) or UploadSummary()

    def upload_studies(self, rows: list[InstanceRow]) -> Sent:
        """Send `rows` (state received) of one study or several: one request may carry
        instances of several studies (`POST /studies`), each answered per instance.
        Returns counts per study. A failure of a whole request stops new requests and is
        reported in the `error` of every study not wholly sent; a transient failure of
        single instances, in their studies' `error` (those rows stay `received`)."""
        sent = Sent()
        per = sent.studies
        for r in rows:
            s = per.setdefault(r.study_uid, UploadSummary())
            s.total += 1
            s.total_bytes += r.size or 0
        started = time.monotonic()
        rows = self._present(rows, per)
        todo = [_Batch(b) for b in make_batches(rows, self.cfg.batch_max_bytes,
                                                self.cfg.batch_max_instances)]
        running: dict[Future, _Batch] = {}
        stopped: Transient | None = None
        while (todo and stopped is None) or running:
            while todo and stopped is None and len(running) < self.cfg.concurrency:
                batch = todo.pop(0)
                running[self._submit(batch)] = batch
            done, _ = wait(running, timeout=self.cfg.timeout * 2 + 30,
                           return_when=FIRST_COMPLETED)
            if not done:  # every request has its own timeout: this is a safety net
                stopped = Transient("STOW-RS: requests did not finish in time")
                for batch in running.values():
                    self._fail_all(batch, stopped, per)
                break
            for fut in done:
                batch = running.pop(fut)
                sent.requests += 1
                more, whole = self._record(batch, fut, per)
                todo += more
                stopped = stopped or whole
        if stopped is not None:  # what was never sent waits for the next run
            for batch in todo:
                self._fail_all(batch, stopped, per)
        seconds = time.monotonic() - started
        for s in per.values():
            s.seconds = seconds
        sent.seconds = seconds
        return sent

    @staticmethod
    def _fail_all(batch: _Batch, err: Transient, per: dict[str, UploadSummary]) -> None:
        for study in {r.study_uid for r in batch.rows}:
            per[study].add_error(err)

    def _present(self, rows: list[InstanceRow],
                 per: dict[str, UploadSummary]) -> list[InstanceRow]:
        """A row whose spool file is gone cannot be sent: say so on the row, send the rest."""
        out, missing = [], []
        for r in rows:
            (out if r.path and Path(r.path).is_file() else missing).append(r)
        for r in missing:
            self.store.instances.set_state(
                [r.sop_uid], InstanceState.REJECTED,
                f"spool file {r.path} is missing, nothing to send: retrieve the study again")
            log.error("upload.spool_missing", study_uid=r.study_uid, sop_uid=r.sop_uid,
                      path=r.path)
            per[r.study_uid].rejected += 1
        return out

    def _submit(self, batch: _Batch) -> Future:
        uids = [r.sop_uid for r in batch.rows]
        self.store.delivery.mark_sending(uids)  # durable before the bytes leave
        batch.attempts = {u: a.get("attempts", 0)
                          for u, a in self.store.delivery.attempts(uids).items()}
        items = [(r.sop_uid, Path(r.path or "")) for r in batch.rows]
        return self.pool().submit(self.client.stow, items, batch.attempts)

    def _record(self, batch: _Batch, fut: Future, per: dict[str, UploadSummary]
                ) -> tuple[list[_Batch], Transient | None]:
        """Write one request's outcome per instance; returns the instances to send alone
        and the error when the request failed as a whole."""
        try:
            out: BatchOutcome = fut.result()
        except Exception as exc:  # a bug in our client must not lose the batch
            out = BatchOutcome(retry=[r.sop_uid for r in batch.rows],
                               error=Transient(f"STOW-RS: {type(exc).__name__}: {exc}"))
        by_uid = {r.sop_uid: r for r in batch.rows}
        with self.store.transaction():
            self.store.instances.set_state(out.uploaded, InstanceState.UPLOADED)
            for uid, reason in out.rejected.items():
                self.store.instances.set_state([uid], InstanceState.REJECTED, reason)
        status = {u: "uploaded" for u in out.uploaded}
        status.update({u: "rejected" for u in out.rejected})
        status.update({u: "retry" for u in out.retry})
        self.store.delivery.set_upload_status(status)
        for study in {r.study_uid for r in batch.rows}:
            per[study].requests += 1
        for uid in out.uploaded:
            if uid in by_uid:
                s = per[by_uid[uid].study_uid]
                s.uploaded += 1
                s.uploaded_bytes += by_uid[uid].size or 0
        for uid, reason in out.rejected.items():
            study = by_uid[uid].study_uid if uid in by_uid else None
            if study is not None:
                per[study].rejected += 1
            log.warning("upload.rejected", study_uid=study, sop_uid=uid, reason=reason)
        whole = None
        if out.error is not None:
            failed = {by_uid[u].study_uid for u in out.retry if u in by_uid}
            for study in failed or {r.study_uid for r in batch.rows}:
                per[study].add_error(out.error)
            if set(out.retry) >= set(by_uid):  # nothing of it went through
                whole = out.error
            log.warning("upload.batch_failed", studies=len({r.study_uid for r in batch.rows}),
                        instances=len(batch.rows), error=str(out.error),
                        http_status=out.http_status)
        if self.progress:
            for study in {r.study_uid for r in batch.rows}:
                self.progress(study, per[study])
        # Instances a 4xx batch left unexplained go again one by one, to find the culprit.
        return [_Batch([by_uid[u]]) for u in out.resend if u in by_uid], whole
