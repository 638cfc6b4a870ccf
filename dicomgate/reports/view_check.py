"""The probe of a site's view (`dicomgate sync --check`, and at daemon start): before
anything is trusted, are the columns there, can every time column be windowed, do the
newest rows pass the record rules?

Problems keep rows from being read (a missing column, a time column that cannot be
compared): health and status show them. Row problems are what the newest rows would be
quarantined for (someone must act, but the rows are listed, not lost). Warnings are worth
a look (fields the view does not have, a clock in the future).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..config.load import CANONICAL_FIELDS
from ..privacy import mask_text
from ..state.names import Fact
from .events import POLL_ORDER
from .record import Rules, normalise
from .source import SourceError
from .view_source import SAMPLE_ROWS, ViewSource
from .view_times import TimeFormatError

FACT = Fact.REPORTS_VIEW_CHECK


@dataclass
class CheckResult:
    at: str
    problems: list[str] = field(default_factory=list)
    row_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    time_columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows_sampled: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.row_problems

    def public(self) -> dict[str, Any]:
        return {"at": self.at, "ok": self.ok, "problems": self.problems,
                "row_problems": self.row_problems, "warnings": self.warnings,
                "time_columns": self.time_columns, "rows_sampled": self.rows_sampled}


def check_view(source: ViewSource, rules: Rules) -> CheckResult:
    now = dt.datetime.now(rules.timezone)
    out = CheckResult(now.isoformat(timespec="seconds"))
    try:
        _columns(source, out)
        if out.problems:
            return out
        for event in POLL_ORDER:
            _time_column(source, event.time_field, event.code, now, out)
        _newest_rows(source, rules, out)
    except SourceError as exc:
        out.problems.append(str(exc))
    return out


def _columns(source: ViewSource, out: CheckResult) -> None:
    config = source.config
    have = {n.lower() for n in source.columns()}
    mapped = dict(config.columns)
    for name in CANONICAL_FIELDS:
        column = config.column(name)
        if column.strip('"').lower() in have:
            continue
        if name in mapped:
            out.problems.append(f"reports.view.columns.{name} = {column!r}: the view "
                                f"{config.name} has no such column")
        elif name == "accessionNo":
            out.problems.append(f"the view {config.name} has no column accessionNo: map the "
                                "accession number column under [reports.view.columns]")
    absent = [n for n in CANONICAL_FIELDS if n not in mapped and n.lower() not in have]
    if absent:
        out.warnings.append("fields the view does not have (left empty; map them under "
                            f"[reports.view.columns] if it has them by other names): "
                            f"{', '.join(absent)}")


def _time_column(source: ViewSource, name: str, code: int, now: dt.datetime,
                 out: CheckResult) -> None:
    column = source.config.column(name)
    if column.strip('"').lower() not in {c.lower() for c in source.columns()}:
        out.problems.append(f"no column {column!r} for {name}: type {code} cannot be read "
                            "(map it under [reports.view.columns])")
        return
    try:
        known = source.time_format(name)
    except TimeFormatError as exc:
        out.problems.append(str(exc))
        out.time_columns[name] = {"column": column, "format": None,
                                  "sample": _show(exc.sample)}
        return
    fmt = known.format
    out.time_columns[name] = {"column": column, "format": fmt.name if fmt else None,
                              "configured": known.configured, "newest": _show(known.newest),
                              "offsets": bool(fmt and fmt.offsets)}
    if fmt is None:
        out.warnings.append(f"{column} ({name}) holds no value yet: its format is learned "
                            "when it does")
        return
    newest = fmt.parse(known.newest, source.tz)
    if newest is not None and newest > now + dt.timedelta(hours=1):
        out.warnings.append(f"{column} ({name}): newest value {_show(known.newest)} is in the "
                            "future: the PACS clock or gateway.timezone is wrong")


def _newest_rows(source: ViewSource, rules: Rules, out: CheckResult) -> None:
    rows = source.newest(SAMPLE_ROWS)
    out.rows_sampled = len(rows)
    problems: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    for row in rows:
        n = normalise(row, rules)
        for p in n.problems:
            problems.setdefault(p.field, []).append(str(p))
        for w in n.warnings:
            warnings.setdefault(w.split(":")[0], []).append(w)
    for name, found in problems.items():
        out.row_problems.append(f"{len(found)} of the {len(rows)} newest rows would be "
                            f"quarantined for {name}, e.g. {mask_text(found[0])}")
    for found in warnings.values():
        out.warnings.append(f"{len(found)} of the {len(rows)} newest rows: "
                            f"{mask_text(found[0])}")


def _show(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)
