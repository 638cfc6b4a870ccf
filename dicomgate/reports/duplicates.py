"""Several rows of one exam in one read: choose one, the same one every time.

A view that joins the exam to its report or fee tables shows an exam twice when a
joined table holds two rows for it (two report drafts, a charge and a refund). They
are one exam: the row with the latest modify/audit/report/refund time wins, then the
row whose content sorts last (a stable tie-break: row order never decides), so every
poll chooses the same row and no version flips back and forth.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any
from zoneinfo import ZoneInfo

from .source import Row
from .time_format import parse_any

# The row the applier finds its choice in: {"rows": n, "chosen": digest}
MARK = "_duplicates"
RANK_FIELDS = ("modifyTime", "auditTime", "reportTime", "refundTime")
RULE = "the latest modify/audit/report/refund time, then the content (stable)"
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def key(row: Row) -> tuple[str, str]:
    """(hospitalId, accessionNo) as the view gives them ("" when absent)."""
    return (_text(row.get("hospitalId")), _text(row.get("accessionNo")))


def pick(rows: list[Row], tz: ZoneInfo) -> list[Row]:
    """One row per key, in the order keys first appear; a chosen row carries MARK."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    out = []
    for group in groups.values():
        if len(group) == 1 or not group[0].get("accessionNo"):
            out.extend(group)  # rows without a key are each rejected on their own
            continue
        chosen = max(group, key=lambda r: rank(r, tz))
        out.append({**chosen, MARK: {"rows": len(group), "chosen": digest(chosen)[:12]}})
    return out


def rank(row: Row, tz: ZoneInfo) -> tuple:
    times = [report_time(row, f, tz) for f in RANK_FIELDS]
    return (max(times), *times, digest(row))


def report_time(row: Row, field: str, tz: ZoneInfo) -> dt.datetime:
    value = row.get(field)
    parsed = parse_any(value, tz) if value is not None else None
    return parsed or _NEVER


def digest(row: Row) -> str:
    data = {k: _plain(v) for k, v in row.items() if k != MARK}
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False)
                          .encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return "" if value is None else str(value).strip()
