"""Text integrity: what the driver hands over is compared with what the database holds.

A driver can change text without an error: MariaDB Connector/ODBC 3.1's UTF-16 path drops
the last characters of texts with 4-byte characters (𠮷), a wrong decoding setting turns
one character into several. For a sample of the newest rows, the database's own count of
characters of every mapped text column (CHAR_LENGTH, LEN, LENGTH) is read beside the value;
a difference names the column, the driver and the setting to change. Run by sync --check,
by the daemon's daily check, and once on every new connection before a row is applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .source import SourceError
from .view_dialect import CHARSETS, CHINESE_CAPABLE

if TYPE_CHECKING:
    from .view_source import ViewSource

SAMPLE_ROWS = 50


class TextCheckUnavailable(SourceError):
    """The database would not count the characters (the rows are read unchecked)."""


def text_columns(source: ViewSource) -> list[tuple[str, str]]:
    """(view column, canonical field) of the mapped columns the driver hands over as text."""
    return [(name, source._canonical[name.lower()]) for name, kind in source.description()
            if kind is str and name.lower() in source._canonical]


def mismatches(source: ViewSource, limit: int = SAMPLE_ROWS) -> list[str]:
    """One line per text column whose values did not arrive whole in the newest rows."""
    source._connect()
    assert source.session is not None
    dialect = source.session.dialect
    if dialect.char_length is None:
        return []
    if dialect.name == "sqlite" and source.config.encoding not in ("", "utf-8"):
        return []  # SQLite counts a GBK text's bytes as if they were UTF-8
    charset = source.session.charset
    if charset and CHARSETS.get(charset.lower()) not in CHINESE_CAPABLE:
        return [f"the connection's character set is {charset}: Chinese text arrives as '?' "
                f"through ODBC driver {source.driver or '?'} — add CHARSET=utf8mb4 to "
                "reports.view.connection"]
    columns = text_columns(source)
    if not columns:
        return []
    order = source.config.column("examTime")
    names = {n.lower() for n, _ in source.description()}
    if order.strip('"').lower() not in names:
        order = source.config.column("accessionNo")
    acc = source._q(source.config.column("accessionNo"))
    parts = ", ".join(f"{source._q(c)}, {dialect.char_length}({source._q(c)})"
                      for c, _ in columns)
    sql = (f"SELECT {acc}, {parts} FROM {source._view()} WHERE {source._q(order)} IS NOT NULL "
           f"ORDER BY {source._q(order)} DESC")
    try:
        rows = source._fetch(sql, (), limit)
    except SourceError as exc:  # e.g. a type the length function does not take
        raise TextCheckUnavailable(
            f"the text of the view could not be checked against the database's "
            f"{dialect.char_length}(): {exc}") from None
    found: dict[str, list[tuple[Any, int, int]]] = {}
    for row in rows:
        for i, (column, _) in enumerate(columns):
            value, held = source._value(row[1 + 2 * i]), row[2 + 2 * i]
            if not isinstance(value, str) or held is None:
                continue
            if not _same(value, int(held), dialect.ignores_trailing_spaces):
                found.setdefault(column, []).append((row[0], int(held), len(value)))
    return [_line(source, column, field, found[column], len(rows))
            for column, field in columns if column in found]


def _same(value: str, held: int, ignores_trailing_spaces: bool) -> bool:
    if ignores_trailing_spaces:  # SQL Server: LEN() leaves trailing spaces out and counts
        # a 4-byte character as two unless the column's collation is _SC
        stripped = value.rstrip(" ")
        return held in (len(stripped), len(stripped.encode("utf-16-le")) // 2)
    return held == len(value)


def _line(source: ViewSource, column: str, field: str, found: list[tuple[Any, int, int]],
          sampled: int) -> str:
    acc, held, got = found[0]
    assert source.session is not None
    now = source.config.text_decoding
    shown = f"{now} ({source.session.wide})" if now == "auto" else now
    other = "utf-8" if source.session.wide == "utf-16le" else "utf-16le"
    return (f"text column {column} ({field}) does not arrive as the database holds it: "
            f"{len(found)} of {sampled} newest values differ, e.g. accession {acc}: "
            f"{held} characters in the database, {got} arrived through ODBC driver "
            f"{source.driver or '?'} — change reports.view.text_decoding (now {shown}; try "
            f"\"{other}\", or \"auto\"), reports.view.encoding for a GBK database (now "
            f"{source.config.encoding or 'unset'}) or the driver's character set option, then "
            "run dicomgate sync --check again")


def decode_error(source: ViewSource, exc: UnicodeDecodeError) -> str:
    wide = source.session.wide if source.session else "?"
    return (f"text from ODBC driver {source.driver or '?'} cannot be decoded as {exc.encoding}"
            f" ({exc.reason} at byte {exc.start}): the driver sends it otherwise — change "
            f"reports.view.text_decoding (now {source.config.text_decoding}, {wide}) or, for "
            "narrow text, reports.view.encoding")

