"""Several due retrieves moved by one C-MOVE: a STUDY-level C-MOVE whose Study Instance UID
is a list (PS3.4 C.4.2.2.1, list matching on the unique key). Orthanc answers it with one
sub-association for all the studies, so a backlog of small studies costs the PACS and our
Portal AET one association per batch instead of one per study.

Only the move is shared. Each received instance counts for the study its own Study
Instance UID names; a study is complete when the spool holds exactly the number of
instances the PACS's C-FIND gave for it. Everything else (an incomplete study, one the PACS
does not hold, a refused or failed move) goes the one-study way of retrieve.py: its own
C-MOVE, its repair ladder, its own message.

Whether a PACS does list moves is learned from what arrives (fact `images.list_moves`,
per PACS): a batch that brought instances of two or more studies says yes; one that
brought at most one study's says no, and that PACS gets one study per C-MOVE (asked again
after a day; `pacs.list_moves` forces either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ..config import PacsConfig
from ..state import Store, Task
from ..state.kinds import Retrieve
from ..state.names import Fact, StudyState
from ..tasks import Batching
from . import move_record
from .scu import Cancelled, MoveResult, PacsClient, PacsRefused, PacsUnavailable

log = structlog.get_logger("dicomgate.images.move_batch")

FACT = Fact.LIST_MOVES
ASK_AGAIN = 86400.0  # a PACS found not to do list moves is tried again after a day

# (accession number, hospital id, the PACS session) -> the exam's study UIDs
Resolve = Callable[[str, str, PacsClient], list[str]]
# (study UID, instances): the study is complete; returns the study's one-line result
Finish = Callable[[str, int], str]
WATCH_EVERY = 0.05  # seconds between looks at which studies of a batch have all arrived


@dataclass
class Prepared:
    """What a batch did for one of its tasks; the task's handler takes it from here."""
    uids: list[str] | None = None  # an acc: retrieve's studies, resolved by the batch
    error: Exception | None = None  # the batch's C-FIND or C-MOVE failed: this task's fault
    complete: dict[str, int] = field(default_factory=dict)  # study UID -> instances, all held
    finished: dict[str, str] = field(default_factory=dict)  # study UID -> result: done early
    # Every study of the task complete from a batched C-MOVE, the first started then: a
    # re-check asked for before (report audited meanwhile) has been done, as the STUDY-level
    # move brought all the PACS held at its start, exactly the count of its C-FIND.
    fresh_since: float | None = None


def plan(counts: list[tuple[str, int]], size: int, limit: int) -> list[list[str]]:
    """Studies (UID, instances) in C-MOVE groups of at most `size` studies and `limit`
    instances, in arrival order within a group; a study above `limit` alone. The smaller
    groups first, so a large study never holds small ones back."""
    groups: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for uid, n in counts:
        if current and (len(current) >= size or sum(c for _, c in current) + n > limit):
            groups.append(current)
            current = []
        current.append((uid, n))
    if current:
        groups.append(current)
    groups.sort(key=lambda g: sum(c for _, c in g))  # stable: arrival order among equals
    return [[uid for uid, _ in g] for g in groups]


def pacs_key(pacs: PacsConfig) -> str:
    return f"{pacs.ae_title}@{pacs.host}:{pacs.port}"


def verdict(store: Store, pacs: PacsConfig) -> dict | None:
    return (store.facts.get(FACT) or {}).get(pacs_key(pacs))


def list_moves_wanted(store: Store, pacs: PacsConfig) -> bool:
    if pacs.list_moves != "auto":
        return pacs.list_moves == "on"
    seen = verdict(store, pacs)
    return not seen or seen.get("ok") is not False or \
        time.time() - float(seen.get("at", 0)) > ASK_AGAIN


def remember(store: Store, pacs: PacsConfig, ok: bool, why: str) -> None:
    before = verdict(store, pacs) or {}
    facts = dict(store.facts.get(FACT) or {})
    facts[pacs_key(pacs)] = {"ok": ok, "at": time.time(), "why": why}
    store.facts.set(FACT, facts)
    if before.get("ok") is not ok:
        (log.info if ok else log.warning)(
            "pacs.list_moves", pacs=pacs_key(pacs), works=ok, why=why,
            effect="several studies per C-MOVE" if ok else "one study per C-MOVE")


class Batcher:
    """Claims more due retrieves beside the one a worker took, and moves them together.
    The worker pool takes them (it renews their leases with its own) and runs each one's
    handler afterwards, which records each outcome on its own."""

    def __init__(self, store: Store, pacs: PacsConfig, pool: Batching):
        self.store = store
        self.pacs = pacs
        self.pool = pool

    def claim_more(self, first: Task) -> list[Task]:
        """Due retrieves besides `first`: none if the PACS does not do list moves. What is
        due now, never waiting for a batch to fill (the first study's latency)."""
        if self.pacs.move_batch < 2 or not list_moves_wanted(self.store, self.pacs):
            return []
        return self.pool.claim_more(Retrieve.kind, self.pacs.move_batch - 1)

    def run_task(self, task: Task) -> None:
        """The worker's run(): the task's handler, its outcome recorded."""
        self.pool.run(task)

    def release(self, task: Task) -> None:
        """dicomgate is stopping: a task of the batch not run yet goes back untouched."""
        self.pool.give_back(task, "dicomgate is stopping; it runs at the next start")

    def prepare(self, client: PacsClient, tasks: list[Task], resolve: Resolve,
                finish: Finish) -> dict[int, Prepared]:
        """Resolve, count and move the batch's studies over one association to the PACS;
        what each task's handler needs to finish or carry on alone. A study whose
        instances have all arrived is finished (`finish`) while the C-MOVE goes on, so
        its upload need not wait for the rest of the batch."""
        out = {t.id: Prepared() for t in tasks}
        try:
            with client.session() as pacs:
                owner = self._resolve(pacs, tasks, out, resolve)
                counts = self._counts(pacs, list(owner))
                for group in self._plan(counts):
                    if len(group) > 1:
                        self._move(pacs, group, counts, owner, out, finish)
                for task_id, p in out.items():
                    uids = [u for u, t in owner.items() if t == task_id]
                    if not uids or p.error is not None or \
                            not all(u in p.finished for u in uids):
                        p.fresh_since = None
        except Cancelled:
            raise
        except PacsUnavailable as exc:  # the PACS is gone (or stalled): the tasks not yet
            for p in out.values():  # done wait for it (no more groups are tried)
                if p.error is None and not p.finished:
                    p.error = exc
        return out

    def _resolve(self, pacs: PacsClient, tasks: list[Task], out: dict[int, Prepared],
                 resolve: Resolve) -> dict[str, int]:
        """{study UID: task id} of the batch's studies (an acc: retrieve's found by C-FIND)."""
        owner: dict[str, int] = {}
        for t in tasks:
            work = t.work
            if not isinstance(work, Retrieve) or work.image_paths:
                continue
            if work.study_uid:
                uids = [work.study_uid]
            else:
                try:
                    uids = resolve(str(work.accession_no), str(work.hospital_id), pacs)
                except PacsUnavailable:
                    raise
                except Exception as exc:  # its own outcome (not found yet, refused)
                    out[t.id].error = exc
                    continue
                out[t.id].uids = uids
            for uid in uids:  # tied to its exam before it may complete
                self.store.instances.ensure_study(uid, accession_no=work.accession_no,
                                                  exam_id=work.exam_id)
                owner.setdefault(uid, t.id)
        return owner

    def _counts(self, pacs: PacsClient, uids: list[str]) -> dict[str, int | None]:
        """{study: instances the PACS holds} for the studies we hold nothing of (others go
        the one-study way); None when the PACS gives no NumberOfStudyRelatedInstances
        (DCMTK dcmqrscp): moved in the batch all the same, its completeness then checked
        by the one-study way's listing. A count of 0: the PACS does not hold it (yet).
        One C-FIND of the UID list first; a study it does not answer is asked alone."""
        todo = [uid for uid in uids if not self.store.instances.of_study(uid)]
        listed = self._listed_counts(pacs, todo) if len(todo) > 1 else {}
        out: dict[str, int | None] = {}
        for uid in todo:
            n = listed.get(uid)
            if n is None:
                try:
                    n = pacs.study_instance_count(uid)
                except PacsRefused as exc:
                    log.info("pacs.study_count_refused", study_uid=uid, error=str(exc))
            if n != 0:
                out[uid] = n
        log.debug("move_batch.counted", studies=len(todo), by_list=len(listed))
        return out

    def _listed_counts(self, pacs: PacsClient, uids: list[str]) -> dict[str, int]:
        """NumberOfStudyRelatedInstances of several studies by one STUDY-level C-FIND of
        their UID list; {} when the PACS refuses or ignores the list."""
        try:
            found = pacs.find("STUDY", {"StudyInstanceUID": list(uids), "PatientID": "",
                                        "NumberOfStudyRelatedInstances": ""})
        except PacsRefused as exc:
            log.info("pacs.list_find_refused", studies=len(uids), error=str(exc))
            return {}
        wanted, out = set(uids), {}  # a PACS may answer studies it was not asked for
        for d in found:
            uid = str(d.get("StudyInstanceUID", "") or "")
            n = d.get("NumberOfStudyRelatedInstances")
            if uid in wanted and n not in (None, ""):
                out[uid] = int(n)
        return out

    def _plan(self, counts: dict[str, int | None]) -> list[list[str]]:
        """The C-MOVE groups; a study of unknown size weighs an even share of a batch."""
        share = max(1, self.pacs.move_batch_instances // self.pacs.move_batch)
        return plan([(uid, share if n is None else n) for uid, n in counts.items()],
                    self.pacs.move_batch, self.pacs.move_batch_instances)

    def _move(self, pacs: PacsClient, group: list[str], counts: dict[str, int | None],
              owner: dict[str, int], out: dict[int, Prepared], finish: Finish) -> None:
        started, t0 = time.time(), time.monotonic()
        msg_id = pacs.next_message_id()
        me = pacs.dicom.ae_title
        for uid in group:
            self.store.instances.set_study(uid, state=StudyState.RETRIEVING,
                                           expected_count=counts[uid])
            p = out[owner[uid]]
            p.fresh_since = min(p.fresh_since or started, started)
        result: MoveResult | None = None
        refused = None
        watch = _Arrivals(self, group, counts, owner, out, finish)
        try:
            result = pacs.move("STUDY", {"StudyInstanceUID": list(group)}, msg_id=msg_id,
                               progress=watch.look,
                               activity=lambda: move_record.last_activity(
                                   self.store, me, msg_id, group[0], started))
        except PacsRefused as exc:  # a failed sub-operation, or the list refused: what
            result = getattr(exc, "move_result", None)  # arrived is judged below
            refused = str(exc)
            log.warning("move_batch.failed", studies=len(group), error=refused,
                        then="a study not complete is moved on its own")
        except Cancelled:
            raise
        except PacsUnavailable:  # stalled or dropped: keep what fully arrived, then wait
            self._judge(group, counts, owner, out, finish, None, None,
                        time.monotonic() - t0, (me, msg_id, started), verdict=False)
            raise
        self._judge(group, counts, owner, out, finish, result, refused,
                    time.monotonic() - t0, (me, msg_id, started))

    def _judge(self, group: list[str], counts: dict[str, int | None], owner: dict[str, int],
               out: dict[int, Prepared], finish: Finish, result: MoveResult | None,
               refused: str | None, seconds: float, move: tuple[str, int, float],
               verdict: bool = True) -> None:
        """What arrived: each complete study finished, the PACS's verdict on UID lists.
        `move`: (our AE, the C-MOVE's Message ID, when it started)."""
        from .retrieve import present_sop_uids  # retrieve.py uses this module

        held = {uid: len(present_sop_uids(self.store, uid)) for uid in group}
        complete = [uid for uid in group if held[uid] == counts[uid]]  # never None == n
        for uid in complete:
            out[owner[uid]].complete[uid] = held[uid]
            done(uid, held[uid], out[owner[uid]], finish)
        arrived = [uid for uid in group if held[uid]]
        log.info("move_batch.moved", studies=len(group),
                 expected=sum(counts[u] or 0 for u in group),
                 completed=result.completed if result else None,
                 failed=result.failed if result else None, complete=len(complete),
                 studies_arrived=len(arrived), seconds=round(seconds, 3))
        if not verdict:
            pass  # the move did not end: it says nothing about UID lists
        elif len(arrived) >= 2:
            remember(self.store, self.pacs, True, f"{len(arrived)} of {len(group)} studies "
                     "arrived from one C-MOVE")
        elif self._failed_suboperation(result, refused, arrived, group[0], move):
            pass  # Orthanc ends the move at a failed sub-operation; a PACS that does not
            # know us at all: neither says anything about UID lists
        elif (result.completed if result else 0) <= max((held[u] for u in arrived),
                                                        default=0):
            why = (f"was refused ({refused})" if refused else
                   f"completed {result.completed if result else 0} sub-operations")
            remember(self.store, self.pacs, False, f"a C-MOVE of {len(group)} studies {why}"
                     f" and brought {len(arrived)} of them")

    def _failed_suboperation(self, result: MoveResult | None, refused: str | None,
                             arrived: list[str], first: str, move: tuple[str, int, float]
                             ) -> bool:
        if result is not None and result.failed:
            return True
        if refused is None:
            return False
        if arrived or "0xA801" in refused:
            return True
        # nothing arrived: did our Portal AET refuse what the PACS sent for this move?
        me, msg_id, started = move
        saw = move_record.read(self.store, me, msg_id, first, started)
        return any(a.refused for a in saw.associations)



def done(uid: str, n: int, prepared: Prepared, finish: Finish) -> None:
    """The study is complete: finished once (state, upload queued)."""
    if uid not in prepared.finished:
        prepared.finished[uid] = finish(uid, n)


class _Arrivals:
    """Told of the batched C-MOVE's pending responses: finishes each study whose
    instances have all arrived (one query for the batch, at most every WATCH_EVERY)."""

    def __init__(self, batcher: Batcher, group: list[str], counts: dict[str, int | None],
                 owner: dict[str, int], out: dict[int, Prepared], finish: Finish):
        self.batcher, self.counts, self.owner, self.out = batcher, counts, owner, out
        self.finish = finish
        self.waiting = [uid for uid in group if counts[uid] is not None]
        self.last = 0.0

    def look(self, _completed: int, _remaining: int) -> None:
        now = time.monotonic()
        if not self.waiting or now - self.last < WATCH_EVERY:
            return
        self.last = now
        from .retrieve import present_sop_uids  # retrieve.py uses this module

        try:
            rows = self.batcher.store.instances.counts_of_studies(self.waiting)
            for uid in [u for u in self.waiting if rows.get(u) == self.counts[u]]:
                n = self.counts[uid]
                assert n is not None
                if len(present_sop_uids(self.batcher.store, uid)) != n:
                    continue
                self.waiting.remove(uid)
                prepared = self.out[self.owner[uid]]
                prepared.complete[uid] = n
                done(uid, n, prepared, self.finish)
        except Exception as exc:  # the end of the move checks every study again
            log.warning("move_batch.watch_failed", error=str(exc))

