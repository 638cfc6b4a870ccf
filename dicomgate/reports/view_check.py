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
from . import time_format, view_dialect, view_text
from .events import POLL_ORDER
from .record import Rules, normalise
from .source import SourceError
from .view_source import SAMPLE_ROWS, ViewSource
from .view_times import TimeFormatError

FACT = Fact.REPORTS_VIEW_CHECK
CLOCK_SKEW = dt.timedelta(minutes=1)


@dataclass
class CheckResult:
    at: str
    problems: list[str] = field(default_factory=list)
    row_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    time_columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows_sampled: int = 0
    clock: dict[str, str] = field(default_factory=dict)  # the database's now, by expression

    @property
    def ok(self) -> bool:
        return not self.problems and not self.row_problems

    def public(self) -> dict[str, Any]:
        return {"at": self.at, "ok": self.ok, "problems": self.problems,
                "row_problems": self.row_problems, "warnings": self.warnings,
                "time_columns": self.time_columns, "rows_sampled": self.rows_sampled,
                "clock": self.clock}


def check_view(source: ViewSource, rules: Rules) -> CheckResult:
    now = dt.datetime.now(rules.timezone)
    out = CheckResult(now.isoformat(timespec="seconds"))
    try:
        _columns(source, out)
        if out.problems:
            return out
        _clock(source, now, out)
        _server_zone(source, out)
        try:
            out.problems.extend(view_text.mismatches(source))
        except view_text.TextCheckUnavailable as exc:
            out.warnings.append(str(exc))
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


def _clock(source: ViewSource, now: dt.datetime, out: CheckResult) -> None:
    """The database's clock against ours, its times read as the view's are: a naive one in
    gateway.timezone. More than CLOCK_SKEW apart, every window selects the wrong rows."""
    tz = source.tz
    for expression, raw in source.clock():
        if isinstance(raw, SourceError):
            out.warnings.append(f"the database's clock could not be read with {expression}: "
                                f"{raw}")
            continue
        now = dt.datetime.now(tz)
        value = time_format.parse_any(raw, tz)
        if value is None:
            out.warnings.append(f"the database's {expression} gave {raw!r}: not a time")
            continue
        apart = abs(value - now)
        out.clock[expression] = value.isoformat(sep=" ")
        if apart > CLOCK_SKEW:
            zone = "" if isinstance(raw, dt.datetime) and raw.tzinfo else \
                f" (its naive time read as {tz.key}, gateway.timezone)"
            ours = now.isoformat(sep=" ", timespec="seconds")
            out.problems.append(
                f"the database's clock says {value.isoformat(sep=' ')}{zone} by {expression}, "
                f"the gateway's {ours}: {_span(apart)} apart, so windows would select the "
                "wrong rows — set gateway.timezone to the zone the database keeps its "
                "times in (the database session's zone for time-zone columns), or correct "
                "the clock that is wrong (NTP)")


def _server_zone(source: ViewSource, out: CheckResult) -> None:
    """The server's own zone against gateway.timezone: worth a look, not a failure (its
    naive times are only wrong when the database itself writes them)."""
    name = source.server_zone()
    if not name:
        return
    now = dt.datetime.now(source.tz)
    theirs, ours = view_dialect.zone_offset(name, now), now.utcoffset()
    if theirs is None or ours is None or theirs == ours:
        return
    out.warnings.append(
        f"the database server's own zone is {name} (UTC{_offset(theirs)}), gateway.timezone "
        f"is {source.tz.key} (UTC{_offset(ours)}): naive times the database writes itself "
        "(NOW(), DEFAULT CURRENT_TIMESTAMP into a DATETIME/timestamp column) would be read "
        f"{_span(abs(theirs - ours))} off; times the PACS writes in local time and columns "
        "with a zone are read right")


def _offset(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _span(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60} s"


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
                              "offsets": bool(fmt and fmt.offsets), "odd": known.odd}
    if known.odd and fmt is not None:
        out.warnings.append(f"{known.odd} value(s) of {column} ({name}) are not {fmt.name!r}: "
                            "those rows are read on every poll, each taken by the time it "
                            "parses to or quarantined with its value (have the PACS vendor "
                            "fix them)")
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
