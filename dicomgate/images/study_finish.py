"""How one study's retrieve ends: complete (upload queued), incomplete (the task retries,
`detail` says what is missing and why), or complete but for instances the PACS must correct
(delivered without them, the task left dead naming them)."""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..state import Store
from ..state.kinds import Upload
from ..state.names import StudyState
from ..tasks import Fatal, RetryLater
from .repair import Step, give_up_detail
from .study_expected import Expected, Missing

log = structlog.get_logger("dicomgate.images.retrieve")


class Finisher:
    def __init__(self, store: Store, where: str, queue_uploads: bool):
        self.store = store
        self.where = where  # the PACS, as messages name it
        self.queue_uploads = queue_uploads  # False without [upstream]: nobody would run them

    def finish(self, study_uid: str, exp: Expected, missing: Missing, moved: int,
               started: float, steps: list[Step]) -> str:
        seconds = round(time.monotonic() - started, 2)
        if missing:
            n = exp.size(missing)
            detail: dict[str, Any] = {"missing": n, "expected": exp.count, "moved": moved}
            why = f"{n} of {exp.count} instances did not arrive after C-MOVE and repair"
            if isinstance(missing, dict):
                detail["missing_sop_uids"] = sorted(u for s in missing.values() for u in s)[:50]
                if steps:
                    why = give_up_detail(steps, missing, self.where)
            detail["repair"] = [s.as_dict() for s in steps]
            detail["why"] = why
            self.store.instances.set_study(study_uid, state=StudyState.INCOMPLETE,
                                           expected_count=exp.count, detail=detail)
            log.warning("study.incomplete", study_uid=study_uid, missing=n, expected=exp.count,
                        moved=moved, seconds=seconds, why=why)
            raise RetryLater(f"study {study_uid}: {why}; will try again")
        with self.store.transaction():
            self.store.instances.set_study(study_uid, state=StudyState.COMPLETE,
                                           expected_count=exp.count,
                                           detail={"moved": moved, "at": time.time()})
            if self.queue_uploads:
                self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)
        log.info("study.complete", study_uid=study_uid, instances=exp.count, moved=moved,
                 seconds=seconds, **exp.short_count())
        return f"study {study_uid}: complete, {exp.count} instances, {moved} moved" + (
            f" ({self.where} counted {exp.pacs_count})" if exp.pacs_count else "")

    def without(self, study_uid: str, exp: Expected, left_out: dict[str, str],
                moved: int, unsendable: set[str]) -> str:
        """Everything arrived but what our SCP quarantined or the PACS cannot send: deliver
        the rest, then leave the task dead so a person sees which instances the PACS must
        correct."""
        good = exp.count - len(left_out)
        quarantined = {u: w for u, w in left_out.items() if u not in unsendable}
        detail = {"moved": moved, "at": time.time(),
                  "quarantined": sorted(quarantined)[:50],
                  "unsendable": {u: left_out[u] for u in sorted(unsendable)[:50]}}
        with self.store.transaction():
            self.store.instances.set_study(study_uid, state=StudyState.COMPLETE,
                                           expected_count=good, detail=detail)
            if self.queue_uploads:
                self.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)
        queued = " and queued for upload" if self.queue_uploads else ""
        parts = []
        if quarantined:
            log.error("study.instances_quarantined", study_uid=study_uid, delivered=good,
                      quarantined=sorted(quarantined))
            parts.append(f"{len(quarantined)} could not be stored and are in the quarantine "
                         f"dir ({_quarantine_text(quarantined)})")
        if unsendable:
            log.error("study.instances_unsendable", study_uid=study_uid, delivered=good,
                      unsendable=sorted(unsendable))
            parts.append(f"{len(unsendable)} the PACS did not send even when asked for one "
                         f"by one ({_quarantine_text({u: left_out[u] for u in unsendable})}): "
                         "check those files on the PACS (damaged or unreadable: its log "
                         "says which)")
        raise Fatal(f"study {study_uid}: {good} of {exp.count} instances retrieved{queued}; "
                    + "; ".join(parts) + ": have the PACS correct them, then "
                    "`dicomgate tasks retry` this task")


def _quarantine_text(quarantined: dict[str, str]) -> str:
    return "; ".join(f"{uid}: {why}" for uid, why in sorted(quarantined.items())[:5])
