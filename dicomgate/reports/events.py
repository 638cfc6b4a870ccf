"""The four event types of spec 4.1 mode 2, each with the time field its window is read by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventType:
    code: int
    name: str
    time_field: str
    required: tuple[str, ...]  # besides accessionNo


PERFORMED = EventType(1, "performed", "examTime", ("examTime",))
REFUNDED = EventType(2, "refunded", "refundTime", ("refundTime",))
AUDITED = EventType(3, "audited", "auditTime", ("auditTime",))
MODIFIED = EventType(4, "modified", "modifyTime", ("modifyTime",))

BY_CODE = {e.code: e for e in (PERFORMED, REFUNDED, AUDITED, MODIFIED)}
# Performed before reported before refunded: a refund seen in the same pass wins.
POLL_ORDER = (PERFORMED, AUDITED, MODIFIED, REFUNDED)

# The fields that make up a report version: a change in any of them is a new version.
REPORT_FIELDS = ("examFindings", "examConclusion", "examRsltCode", "reportDoctor",
                 "auditDoctor", "reportTime", "auditTime", "modifyTime")
REPORT_TEXT = ("examFindings", "examConclusion")


def implied_by(record: dict) -> list[EventType]:
    """The events a record read by accession number carries (those whose time is set)."""
    return [e for e in POLL_ORDER if record.get(e.time_field)]
