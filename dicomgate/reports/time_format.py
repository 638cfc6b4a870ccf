"""How a view keeps a time column, and how a window [start, end) is selected by it.

A view may keep its times as a typed DATETIME, as text in the site's own format
(`2026/11/26 02:55:14`, `20261126025514`, ISO 8601 with `T` and an offset) or as a
number (epoch seconds or milliseconds, `20261126025514` in a NUMERIC column). The
database compares a bound value with the column in its own type, so the bounds are
bound in the column's format: text formats only where they sort as text (year first,
zero-padded), numbers as numbers. Values with UTC offsets do not sort by instant, so
their bounds are widened by the largest offsets and every row is filtered again in
Python by its parsed instant.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

# Pattern tokens (Java style, as the spec writes times) -> strftime, regex, LIKE shape.
_TOKENS = {"yyyy": ("%Y", r"\d{4}", "____"), "MM": ("%m", r"\d{2}", "__"),
           "dd": ("%d", r"\d{2}", "__"), "HH": ("%H", r"\d{2}", "__"),
           "mm": ("%M", r"\d{2}", "__"), "ss": ("%S", r"\d{2}", "__")}
_SPLIT_RE = re.compile(r"(yyyy|MM|dd|HH|mm|ss)")
_SUFFIX = r"(\.\d{1,9})?(?P<offset>Z|[+-]\d{2}:?\d{2})?"  # fraction, UTC offset
_OFFSET_RE = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
# The largest UTC offsets in use: bounds are widened by these when values carry one.
_WIDEN = dt.timedelta(hours=14)

# Tried in this order when reports.view.time_format = "auto".
TEXT_CANDIDATES = ("yyyy-MM-dd HH:mm:ss", "yyyy/MM/dd HH:mm:ss", "yyyyMMddHHmmss",
                   "yyyy-MM-ddTHH:mm:ss", "yyyy.MM.dd HH:mm:ss", "yyyy年MM月dd日 HH:mm:ss",
                   "yyyy年MM月dd日 HH时mm分ss秒", "yyyy-MM-dd", "yyyy/MM/dd", "yyyyMMdd")
NAMED = {"iso8601": "yyyy-MM-ddTHH:mm:ss"}
NUMBER_FORMATS = ("epoch", "epoch_ms", "number:yyyyMMddHHmmss")


class FormatProblem(ValueError):
    """Sampled values that a window cannot select by; the message says why."""


@dataclass(frozen=True)
class TimeFormat:
    """One column's format. kind: "datetime" (typed), "text" or "number"."""

    name: str
    kind: str
    pattern: str = ""  # text: the Java-style pattern
    offsets: bool = False  # text values carry UTC offsets: widen and filter

    # -- what to bind ---------------------------------------------------------------------
    def bounds(self, start: dt.datetime, end: dt.datetime, tz: ZoneInfo,
               text_datetimes: bool) -> tuple[Any, Any]:
        """Values to bind for `col >= ? AND col < ?` (start, end: naive local times)."""
        if self.kind == "datetime":
            if self.offsets:  # values that carry their zone (SQL Server datetimeoffset):
                # bound as instants, which the database converts to the column's type
                return (start.replace(tzinfo=tz, microsecond=0).isoformat(sep=" "),
                        end.replace(tzinfo=tz, microsecond=0).isoformat(sep=" "))
            if text_datetimes:  # SQLite: "typed" times are text yyyy-MM-dd HH:mm:ss
                return _fmt(start, "%Y-%m-%d %H:%M:%S"), _fmt(end, "%Y-%m-%d %H:%M:%S")
            return start.replace(microsecond=0), end.replace(microsecond=0)
        if self.kind == "number":
            return self._number(start, tz), self._number(end, tz, ceil=True)
        lo, hi = start, end
        if self.offsets:  # the text reads in each value's own offset
            lo = (start.replace(tzinfo=tz).astimezone(dt.UTC) - _WIDEN).replace(tzinfo=None)
            hi = (end.replace(tzinfo=tz).astimezone(dt.UTC) + _WIDEN).replace(tzinfo=None)
        if self.date_only:  # a date-only value is the whole day: include the end day
            hi = dt.datetime.combine(hi.date() + dt.timedelta(days=1), dt.time())
        return _fmt(lo, self.strftime), _fmt(hi, self.strftime)

    def _number(self, value: dt.datetime, tz: ZoneInfo, ceil: bool = False) -> int:
        if self.name == "number:yyyyMMddHHmmss":
            return int(value.strftime("%Y%m%d%H%M%S"))
        seconds = value.replace(tzinfo=tz).timestamp()
        return int(seconds * 1000) if self.name == "epoch_ms" else int(seconds) + int(ceil)

    @property
    def date_only(self) -> bool:
        return self.kind == "text" and "HH" not in self.pattern

    @property
    def strftime(self) -> str:
        return "".join(_TOKENS[p][0] if p in _TOKENS else p.replace("%", "%%")
                       for p in _SPLIT_RE.split(self.pattern) if p)

    @property
    def shape(self) -> str | None:
        """A SQL LIKE pattern every value of a text format matches (`_` one character)."""
        if self.kind != "text":
            return None
        body = "".join(_TOKENS[p][2] if p in _TOKENS else p.replace("_", "\\_")
                       .replace("%", "\\%") for p in _SPLIT_RE.split(self.pattern) if p)
        exact = self.pattern.isalpha()  # yyyyMMddHHmmss: exactly that many characters
        return body if exact else body + "%"

    # -- reading values -------------------------------------------------------------------
    def matches(self, raw: Any) -> bool:
        """Whether `raw` is a value of this format (so that the window can select it)."""
        if raw is None:
            return True
        if self.kind == "datetime":
            return isinstance(raw, dt.datetime | dt.date)
        if self.kind == "number":
            return _number_kind(raw) == self.name
        return isinstance(raw, str) and bool(self.regex.fullmatch(raw.strip()))

    @property
    def regex(self) -> re.Pattern[str]:
        body = "".join(_TOKENS[p][1] if p in _TOKENS else re.escape(p)
                       for p in _SPLIT_RE.split(self.pattern) if p)
        return re.compile(f"(?P<body>{body})" + ("" if self.date_only else _SUFFIX))

    def parse(self, raw: Any, tz: ZoneInfo) -> dt.datetime | None:
        """An aware datetime (naive values are `tz` local time), or None."""
        m = self.regex.fullmatch(raw.strip()) if self.kind == "text" and \
            isinstance(raw, str) else None
        if m is None:
            return parse_any(raw, tz)
        try:
            value = dt.datetime.strptime(m.group("body"), self.strftime)
        except ValueError:
            return None
        offset = m.groupdict().get("offset")
        return value.replace(tzinfo=_offset(offset) if offset else tz)


def _fmt(value: dt.datetime, pattern: str) -> str:
    return value.strftime(pattern)


def _offset(text: str) -> dt.tzinfo:
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def make(name: str) -> TimeFormat:
    """The format called `name` in the configuration (already checked by config.values)."""
    if name == "datetime":
        return TimeFormat("datetime", "datetime")
    if name in NUMBER_FORMATS:
        return TimeFormat(name, "number")
    pattern = NAMED.get(name, name)
    return TimeFormat(name, "text", pattern, offsets=name == "iso8601")


# -- learning a column's format from sampled values ---------------------------------------
def learn(samples: list[Any]) -> TimeFormat | None:
    """The one format all `samples` share (newest first), None when there are none;
    FormatProblem when they are not all of one format that a window can select by."""
    values = [v for v in samples if v is not None]
    if not values:
        return None
    found = [(v, learn_one(v)) for v in values]
    for value, fmt in found:
        if fmt is None:
            raise FormatProblem(f"value {value!r} is not in a time format a window can "
                                "select by (zero-padded, year first)")
    first_value, first = found[0]
    assert first is not None
    for value, fmt in found[1:]:
        if fmt is None or fmt.name != first.name:
            raise FormatProblem(f"values in two formats: {first_value!r} and {value!r}: "
                                "as text they do not sort by time")
    if first.kind == "text" and not first.offsets:
        offsets = any(isinstance(v, str) and _OFFSET_RE.search(v.strip()) for v in values)
        first = TimeFormat(first.name, "text", first.pattern, offsets=offsets)
    return first


def learn_majority(samples: list[Any]) -> TimeFormat | None:
    """The format most of the values that are times share (the newest one's on a tie),
    None when fewer than half of the `samples` are times at all."""
    values = [v for v in samples if v is not None]
    found = [f for f in (learn_one(v) for v in values) if f is not None]
    if not found or len(found) * 2 < len(values):
        return None
    counts: dict[str, int] = {}
    for f in found:
        counts[f.name] = counts.get(f.name, 0) + 1
    best = max(found, key=lambda f: counts[f.name])  # the first of the most common
    if best.kind == "text" and not best.offsets:
        offsets = any(isinstance(v, str) and _OFFSET_RE.search(v.strip()) and
                      best.matches(v) for v in values)
        best = TimeFormat(best.name, "text", best.pattern, offsets=bool(offsets))
    return best


def learn_one(value: Any) -> TimeFormat | None:
    """The format of one value, or None."""
    if isinstance(value, dt.datetime | dt.date):
        aware = isinstance(value, dt.datetime) and value.tzinfo is not None
        return TimeFormat("datetime", "datetime", offsets=aware)
    kind = _number_kind(value)
    if kind is not None:
        return TimeFormat(kind, "number")
    if isinstance(value, str):
        for pattern in TEXT_CANDIDATES:
            fmt = TimeFormat(pattern, "text", pattern)
            if fmt.matches(value):
                name = "iso8601" if pattern == NAMED["iso8601"] else pattern
                return TimeFormat(name, "text", pattern, offsets=name == "iso8601")
    return None


def _number_kind(raw: Any) -> str | None:
    """epoch / epoch_ms / number:yyyyMMddHHmmss by magnitude, for numbers only."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        return None
    n = float(raw)
    if 1e13 <= n < 1e14 and _digits_time(int(n)) is not None:
        return "number:yyyyMMddHHmmss"
    if 1e11 <= n < 1e13:
        return "epoch_ms"
    if 1e8 <= n < 1e10:
        return "epoch"
    return None


def _digits_time(n: int) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(n), "%Y%m%d%H%M%S")
    except ValueError:
        return None


def parse_any(raw: Any, tz: ZoneInfo) -> dt.datetime | None:
    """Any time form a PACS sends (see the module doc), aware; naive values are `tz`."""
    if isinstance(raw, dt.datetime):
        value = raw
    elif isinstance(raw, dt.date):
        value = dt.datetime.combine(raw, dt.time())
    elif (kind := _number_kind(raw)) is not None:
        if kind == "number:yyyyMMddHHmmss":
            value = _digits_time(int(raw))  # type: ignore[assignment]
        else:
            seconds = float(raw) / (1000 if kind == "epoch_ms" else 1)
            value = dt.datetime.fromtimestamp(seconds, tz)
    elif isinstance(raw, str):
        text = raw.strip().replace("/", "-")
        if re.fullmatch(r"\d{14}", text):  # yyyyMMddHHmmss
            text = f"{text[:4]}-{text[4:6]}-{text[6:8]} {text[8:10]}:{text[10:12]}:{text[12:]}"
        elif re.fullmatch(r"\d{8}", text):  # yyyyMMdd
            text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.replace(microsecond=0)
