"""What a study should hold and what of it is missing: the PACS's listing (or only its
count), the instances we hold, and which of the missing ones cannot come (quarantined by
our SCP, or the PACS cannot send them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import structlog

from ..state import Store
from .move_outcome import MoveVerdicts

log = structlog.get_logger("dicomgate.images.retrieve")

PRESENT_STATES = ("uploaded", "delivered", "purged")  # left the spool on purpose


def present_sop_uids(store: Store, study_uid: str) -> set[str]:
    """Instances we hold or have delivered: a 'received' row counts only if its file is
    still there with its recorded size (an operator may have cleaned the spool; a power
    loss may have truncated a file)."""
    out = set()
    for row in store.instances.of_study(study_uid):
        if row.state in PRESENT_STATES:
            out.add(row.sop_uid)
        elif row.state in ("received", "rejected") and row.path and _size(row.path) == row.size:
            out.add(row.sop_uid)
    return out


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


Missing = dict[str, set[str]] | int


@dataclass(frozen=True)
class Expected:
    by_series: dict[str, set[str]] | None  # None: the PACS only told us how many
    count: int
    classes: tuple[tuple[str, str], ...] = ()  # (SOP Instance UID, SOP Class UID)
    pacs_count: int | None = None  # the PACS's own figure, when fewer than we hold

    def short_count(self) -> dict[str, int]:
        return {"pacs_count": self.pacs_count} if self.pacs_count is not None else {}

    def missing(self, have: set[str]) -> Missing:
        if self.by_series is None:
            return max(0, self.count - len(have))
        return {series: sops - have for series, sops in self.by_series.items()
                if sops - have}

    @staticmethod
    def size(missing: Missing) -> int:
        return sum(len(s) for s in missing.values()) if isinstance(missing, dict) else missing


def at_least_held(study_uid: str, exp: Expected, held: set[str], where: str) -> Expected:
    """The study has at least every instance of it we hold: a PACS whose count or listing
    says fewer (an index that lags an upload, a response lost on the way) is not taken as
    the truth, or a study one short would be called complete."""
    listed = ({u for s in exp.by_series.values() for u in s} if exp.by_series is not None
              else set())
    count = len(listed | held) if exp.by_series is not None else len(held)
    if count <= exp.count:
        return exp
    log.warning("study.count_raised", study_uid=study_uid, pacs_count=exp.count,
                expected=count, held=len(held),
                why=f"we hold more instances of the study than {where} counted or listed: "
                    "the larger figure is expected")
    return replace(exp, count=count, pacs_count=exp.pacs_count or exp.count)


def quarantined_of(exp: Expected, verdicts: MoveVerdicts) -> dict[str, str]:
    """{expected SOP UID: reason} for those our SCP quarantined during this run."""
    if exp.by_series is None:
        return {}
    bad = verdicts.quarantined()
    out = {}
    for uid in (u for s in exp.by_series.values() for u in s):
        # a PACS may cut an over-long UID to 64 characters in the C-STORE request
        hit = bad.get(uid) or (bad.get(uid[:64]) if len(uid) > 64 else None)
        if hit:
            out[uid] = hit
    return out


def unsendable_of(missing: Missing, unsendable: dict[str, str]) -> dict[str, str]:
    """{missing SOP UID: what the PACS answered} for those it did not send when asked for
    one by one."""
    if not isinstance(missing, dict):
        return {}
    return {u: unsendable[u] for s in missing.values() for u in s if u in unsendable}
