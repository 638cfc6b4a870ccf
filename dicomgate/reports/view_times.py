"""The time columns of a view: each one's format, configured or learned from its newest
values, then verified over the whole column before a window is trusted to select by it.
A column that cannot be compared reliably raises TimeFormatError, which names the
column, a sample value and what to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from . import time_format
from .source import SourceError
from .time_format import FormatProblem, TimeFormat

if TYPE_CHECKING:
    from .view_source import ViewSource

log = structlog.get_logger("dicomgate.reports.view")

_MIXED_HELP = ("have the PACS vendor give the column one format in the view (SQL Server: "
               "CONVERT(varchar(19), col, 120); Oracle: TO_CHAR(col, 'YYYY-MM-DD HH24:MI:SS'); "
               "MySQL: DATE_FORMAT(col, '%Y-%m-%d %H:%i:%s')) or a DATETIME column")


# Odd values (not of the column's format) re-read on every poll: beyond this many, the
# column must be fixed at the PACS instead.
ODD_ROWS_MAX = 1000


class TimeFormatError(SourceError):
    """A time column whose values a window cannot select reliably."""

    def __init__(self, field: str, column: str, problem: str, sample: Any, todo: str):
        self.field, self.column, self.sample, self.todo = field, column, sample, todo
        super().__init__(f"view column {column} ({field}) cannot be compared as a time "
                         f"reliably: {problem} — {todo}")


@dataclass(frozen=True)
class ColumnFormat:
    """What the source knows about one time column (shown by sync --check and status)."""

    field: str
    column: str
    format: TimeFormat | None  # None: the column holds no value yet
    configured: str  # "auto" or the configured format
    newest: Any = None
    # values not of `format` (a typing error, another format): a minority, so the column is
    # still windowed by `format` and these rows are read on every poll besides (each one
    # is taken by the time it parses to, or quarantined with its value)
    odd: int = 0


class ColumnTimes:
    """The formats one view source has learned (a new source learns them again)."""

    def __init__(self, source: ViewSource):
        self.source = source
        self.known: dict[str, ColumnFormat] = {}

    def format_of(self, field: str) -> ColumnFormat:
        """The format of `field`'s column: configured or learned from its newest values,
        then verified over the whole column. Raises TimeFormatError."""
        known = self.known.get(field)
        if known is not None:
            return known
        column = self.source.config.column(field)
        configured = self.source.config.format_of(field)
        samples = self.source.sample_column(column)
        key = f"reports.view.time_formats.{field}"
        if configured == "auto":
            try:
                fmt = time_format.learn(samples)
            except FormatProblem as exc:
                fmt = self._learn_from_parseable(column, samples)
                if fmt is None:
                    odd = _first_odd(samples)
                    todo = _MIXED_HELP if time_format.learn_one(odd) else _todo(key, odd)
                    raise TimeFormatError(field, column, str(exc), odd, todo) from None
            if fmt is None:
                return ColumnFormat(field, column, None, configured)  # learn it next time
        else:
            fmt = time_format.make(configured)
            odd = next((v for v in samples if not fmt.matches(v)), None)
            if odd is not None:
                raise TimeFormatError(field, column, f"value {odd!r} is not {configured!r}",
                                      odd, _todo(key, odd))
        odd = self._verify(field, column, fmt, key)
        newest = next((v for v in samples if fmt.matches(v)), None)
        known = ColumnFormat(field, column, fmt, configured, newest, odd)
        self.known[field] = known
        log.info("reports.view_time_format", field=field, column=column, format=fmt.name,
                 offsets=fmt.offsets, configured=configured)
        return known

    def _learn_from_parseable(self, column: str, samples: list[Any]) -> TimeFormat | None:
        """The format of most values that are times, when some sampled ones are not (or
        are in another format). Text that is not a time sorts after the digits a time
        starts with, so the values below ':' are sampled too."""
        if any(isinstance(v, str) for v in samples):
            samples = samples + self.source.sample_column(column, below=":")
        return time_format.learn_majority(samples)

    def _verify(self, field: str, column: str, fmt: TimeFormat, key: str) -> int:
        """How many values of the column are not of `fmt` (rows a window by `fmt` would
        never select). A few are read on every poll besides the window; when they are
        most of the column, or too many to re-read, the column cannot be windowed."""
        q, view = self.source._q(column), self.source._view()
        if fmt.shape is not None:  # text: one LIKE shape (`_` is any one character)
            where = f"{q} IS NOT NULL AND NOT ({q} LIKE ?)"
            odd = self.source._fetch(f"SELECT {q} FROM {view} WHERE {where}", (fmt.shape,), 3)
            if not odd:
                return 0
            count, total = self.source._fetch(
                f"SELECT SUM(CASE WHEN {where} THEN 1 ELSE 0 END), COUNT({q}) FROM {view}",
                (fmt.shape,), 1)[0]
            count, total = int(count or 0), int(total or 0)
            if count * 2 > total or count > ODD_ROWS_MAX:
                raise TimeFormatError(
                    field, column, f"{count} of {total} value(s) are not {fmt.name!r} like "
                    f"the newest ones, e.g. {odd[0][0]!r}; those rows would never be "
                    "selected", odd[0][0], _MIXED_HELP)
            log.warning("reports.view_time_values_odd", field=field, column=column,
                        format=fmt.name, odd=count, total=total)
            return count
        elif fmt.kind == "number":  # the smallest values (not MIN(): the SQLite driver
            # cuts an aggregate of a NUMERIC column to 32 bits)
            for value in self.source.sample_column(column, limit=3, smallest=True):
                if not fmt.matches(value):
                    raise TimeFormatError(field, column, f"value {value!r} is not "
                                          f"{fmt.name!r} like the newest ones", value,
                                          _MIXED_HELP)
        return 0


def _first_odd(samples: list[Any]) -> Any:
    """The first value unlike the newest one (or not a time at all)."""
    present = [v for v in samples if v is not None]
    first = time_format.learn_one(present[0]) if present else None
    for value in present:
        fmt = time_format.learn_one(value)
        if fmt is None or first is None or fmt.name != first.name:
            return value
    return present[-1] if present else None


def _todo(key: str, sample: Any) -> str:
    fmt = time_format.learn_one(sample)
    if fmt is not None:
        return f'set {key} = "{fmt.name}", or {_MIXED_HELP}'
    return (f"if every value is year-first and zero-padded, set {key} to its pattern "
            f'(e.g. "yyyy/MM/dd HH:mm:ss"); otherwise {_MIXED_HELP}')
