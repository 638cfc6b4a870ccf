"""Mode 1: read View_Pacs_Text_Info (or the site's view) over ODBC with pyodbc.

Read-only: the connection asks for read-only access and only SELECTs with bound
parameters are sent; identifiers come from the configuration (checked by the same
rule as check-config), never from data. Rows arrive in `fetchmany` batches ordered
by accession number, so that the poller sees duplicate rows of one exam together.

Time windows are bound in each time column's own format (see time_format.py),
learned by sampling the column's newest values or taken from the configuration,
and verified over the whole column before the first window is trusted. Every row
is filtered again by its parsed time. After an error the connection is dropped and
the next call opens a new one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pyodbc
import structlog

from ..config import values
from ..config.model import ViewConfig
from ..exam_record import CANONICAL_FIELDS, TIME_FIELDS
from . import duplicates, time_format, view_dialect, view_text
from .events import EventType
from .source import Row, SourceError
from .time_format import TimeFormat
from .view_file import ViewFile
from .view_times import ColumnFormat, ColumnTimes

log = structlog.get_logger("dicomgate.reports.view")

_PLAIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # unquoted: the database folds its case
# The SQLite ODBC driver hands a BLOB in a text column over as the literal X'D5C5C8FD'.
_HEX_LITERAL_RE = re.compile(r"^X'((?:[0-9A-Fa-f]{2})*)'$")
SAMPLE_ROWS = 50
_FULL = "dg_whole_"  # prefix of the extra SQLite columns that carry a value with a NUL
class ViewSource:
    name = "view"

    def __init__(self, config: ViewConfig, tz: ZoneInfo):
        self.config = config
        self.tz = tz
        self._conn: pyodbc.Connection | None = None
        self.session: view_dialect.Session | None = None
        self._text_ok = False
        self._file: ViewFile | None = None
        self.driver = ""
        self._quote = '"'
        self._sqlite = False
        checks = [("reports.view.name", config.name, True),
                  *((f"reports.view.columns.{f}", c, False) for f, c in config.columns)]
        for key, ident, dotted in checks:  # the rule check-config applies, again
            try:
                values.sql_identifier(ident, dotted=dotted)
            except values.BadValue as exc:
                raise SourceError(f"{key}: {exc.problem} (expected {exc.expected})") from None
        # site column (case-insensitive) -> canonical field
        mapped = dict(config.columns)
        self._canonical = {mapped.get(f, f).strip('"').lower(): f for f in CANONICAL_FIELDS}
        self.times = ColumnTimes(self)
        self._columns: list[str] | None = None

    # -- connection -----------------------------------------------------------------------
    def _connect(self) -> pyodbc.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = pyodbc.connect(self.config.connection.reveal(), autocommit=True,
                                  readonly=True, timeout=int(self.config.timeout))
        except pyodbc.Error as exc:
            raise SourceError(f"cannot connect to the PACS database over ODBC: {_odbc(exc)} "
                              "(check reports.view.connection, the DSN in odbc.ini and "
                              "the driver in odbcinst.ini: odbcinst -q -d)") from None
        try:
            conn.timeout = int(self.config.timeout)  # per-query timeout
        except pyodbc.Error:  # psqlODBC refuses it; its login timeout still applies
            log.debug("reports.view_no_query_timeout")
        self.session = view_dialect.prepare(conn, self.config, self.tz)
        if self.config.encoding and not self.session.charset:
            # a GBK database: narrow text arrives in that encoding
            conn.setdecoding(pyodbc.SQL_CHAR, encoding=self.config.encoding)
            conn.setencoding(encoding=self.config.encoding)
            # Decode each value here: one undecodable value must quarantine its row,
            # not fail the whole fetch inside pyodbc.
            narrow = _decoder(self.config.encoding)
            for sql_type in (pyodbc.SQL_CHAR, pyodbc.SQL_VARCHAR, pyodbc.SQL_LONGVARCHAR):
                conn.add_output_converter(sql_type, narrow)
        self._quote = (conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) or "").strip()
        self.driver = str(conn.getinfo(pyodbc.SQL_DRIVER_NAME) or "")
        # SQLite keeps "typed" times as text; a bound TIMESTAMP becomes "... .000".
        self._sqlite = "sqlite" in self.driver.lower()
        self._file = ViewFile.of(conn)
        self._conn = conn
        log.info("reports.view_connected", view=self.config.name, driver=self.driver,
                 dbms=self.session.dialect.name, text_decoding=self.session.wide)
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._text_ok = False  # a new connection is checked again
        if conn is not None:
            try:
                conn.close()
            except pyodbc.Error:
                pass

    # -- windows --------------------------------------------------------------------------
    def window(self, event: EventType, start: dt.datetime, end: dt.datetime
               ) -> Iterator[list[Row]]:
        self._same_file()
        self.verify_text()
        field = event.time_field
        known = self.time_format(field)
        if known.format is None:
            log.info("reports.view_column_empty", field=field, column=known.column)
            return  # no value in the column yet: nothing can be in the window
        fmt = known.format
        lo, hi = fmt.bounds(start, end, self.tz, text_datetimes=self._sqlite)
        q = self._q(known.column)
        where, params = f"{q} >= ? AND {q} < ?", (lo, hi)
        if known.odd and fmt.shape:  # the few values of another shape: read every time
            where, params = f"({where} OR NOT ({q} LIKE ?))", (lo, hi, fmt.shape)
        first, last = start.replace(tzinfo=self.tz), end.replace(tzinfo=self.tz)
        # Rows of an exam that the view shows more than once are held back and one is
        # chosen once all are read (duplicates.py); the others stream batch by batch.
        twice = self._repeated(where, params)
        held: list[Row] = []
        for batch in self._select(where, params, known.column):
            rows = [self._times(r) for r in batch]
            kept = [r for r in rows if _inside(r.get(field), fmt, first, last)]
            held.extend(r for r in kept if duplicates.key(r)[1] in twice)
            kept = [r for r in kept if duplicates.key(r)[1] not in twice]
            if kept:
                yield kept
        if held:
            yield duplicates.pick(held, self.tz)

    def _repeated(self, where: str, params: tuple) -> set[str]:
        """Accession numbers with more than one row in the window."""
        q = self._q(self.config.column("accessionNo"))
        sql = (f"SELECT {q} FROM {self._view()} WHERE {where} GROUP BY {q} "
               "HAVING COUNT(*) > 1")
        return {duplicates.key({"accessionNo": self._value(r[0])})[1]
                for r in self._fetch(sql, params, 100_000)}

    def accession(self, accession_no: str) -> list[Row]:
        self._same_file()
        self.verify_text()
        column = self.config.column("accessionNo")
        out: list[Row] = []
        for batch in self._select(f"{self._q(column)} = ?", (accession_no,), column):
            out.extend(self._times(r) for r in batch)
        return out

    def _times(self, row: Row) -> Row:
        """Time values as aware datetimes where they parse (others stay raw and are
        quarantined by the record rules, with the value shown)."""
        for field in TIME_FIELDS:
            raw = row.get(field)
            if raw is None:
                continue
            known = self.times.known.get(field)
            # a column no window reads by (reportTime): the value's own format
            fmt = known.format if known else time_format.learn_one(raw)
            parsed = fmt.parse(raw, self.tz) if fmt else time_format.parse_any(raw, self.tz)
            if parsed is not None:
                row[field] = parsed
        return row

    # -- time formats ---------------------------------------------------------------------
    def time_format(self, field: str) -> ColumnFormat:
        return self.times.format_of(field)

    def sample_column(self, column: str, limit: int = SAMPLE_ROWS, smallest: bool = False,
                      below: str | None = None) -> list[Any]:
        """The newest (largest) non-null values of `column`, or the `smallest`; only those
        sorting `below` a text when given."""
        q = self._q(column)
        where = f"{q} IS NOT NULL" + (f" AND {q} < ?" if below is not None else "")
        sql = (f"SELECT {q} FROM {self._view()} WHERE {where} ORDER BY {q}"
               f"{'' if smallest else ' DESC'}")
        return [r[0] for r in self._fetch(sql, () if below is None else (below,), limit)]

    def clock(self) -> list[tuple[str, Any]]:
        """(expression, value or the SourceError reading it) of the database's current time,
        read the way its time columns are read (through the driver, in the session's zone)."""
        self._connect()
        assert self.session is not None
        out: list[tuple[str, Any]] = []
        for sql in self.session.dialect.clock:
            expression = sql.removeprefix("SELECT ").removesuffix(" FROM DUAL")
            try:
                out.append((expression, self._fetch(sql, (), 1)[0][0]))
            except SourceError as exc:
                out.append((expression, exc))
        return out

    def server_zone(self) -> str | None:
        """The zone the database server keeps its own naive times in, as it names it."""
        self._connect()
        assert self.session is not None
        sql = self.session.dialect.server_zone_sql
        if sql is None:
            return None
        try:
            value = self._fetch(sql, (), 1)
        except SourceError as exc:
            log.warning("reports.view_server_zone_unknown", error=str(exc))
            return None
        return str(value[0][0]) if value and value[0][0] is not None else None

    # -- queries --------------------------------------------------------------------------
    def columns(self) -> list[str]:
        """The view's column names (a query that returns no row)."""
        return [name for name, _ in self.description()]

    def description(self) -> list[tuple[str, type]]:
        """(name, Python type the driver hands it over as) of each column of the view."""
        conn = self._connect()
        try:
            cursor = conn.cursor()
            cursor.execute(f"SELECT * FROM {self._view()} WHERE 1 = 0")
            described = [(d[0], d[1]) for d in cursor.description]
            cursor.close()
            return described
        except pyodbc.Error as exc:
            self.close()
            raise SourceError(f"reading view {self.config.name} failed: {_odbc(exc)}") from None

    def _same_file(self) -> None:
        """Reconnect when a file-based source was replaced by rename (see view_file.py)."""
        if self._conn is None or self._file is None:
            return
        try:
            replaced = self._file.replaced()
        except SourceError:
            self.close()
            raise
        if replaced:
            log.warning("reports.view_file_replaced", path=self._file.path,
                        detail="the file was replaced (renamed over): reading the new one")
            self.close()
            self.times = ColumnTimes(self)  # the new file's columns are learned again
            self._columns = None

    def verify_text(self) -> None:
        """Once per connection, before any row is applied: the newest texts arrive as the
        database holds them. Raises SourceError naming the column and the setting."""
        if self._text_ok:
            return
        try:
            found = view_text.mismatches(self)
        except view_text.TextCheckUnavailable as exc:  # the rows are read, unchecked
            log.warning("reports.view_text_unchecked", reason=str(exc), driver=self.driver)
            found = []
        if found:
            log.error("reports.view_text_mismatch", problems=found, driver=self.driver)
            raise SourceError("; ".join(found))
        self._text_ok = True

    def newest(self, limit: int = SAMPLE_ROWS) -> list[Row]:
        """The newest rows by exam time (for sync --check; any rows when the view has no
        exam time column), times parsed."""
        column = self.config.column("examTime")
        if self._columns is None:
            self._columns = self.columns()
        have = column.strip('"').lower() in {c.lower() for c in self._columns}
        rows: list[Row] = []
        for batch in self._select(f"{self._q(column)} IS NOT NULL" if have else "1 = 1", (),
                                  column, order_by=column if have else None,
                                  descending=True, limit=limit):
            rows.extend(self._times(r) for r in batch)
        return rows

    def _fetch(self, sql: str, params: tuple, limit: int) -> list[Any]:
        conn = self._connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, *params)
            rows = cursor.fetchmany(limit)
            cursor.close()
            return rows
        except UnicodeDecodeError as exc:
            self.close()
            raise SourceError(view_text.decode_error(self, exc)) from None
        except pyodbc.Error as exc:
            self.close()
            raise SourceError(f"reading view {self.config.name} failed: {_odbc(exc)} "
                              f"(query: {sql})") from None

    def _select(self, where: str, params: tuple, required: str, order_by: str | None = None,
                descending: bool = False, limit: int | None = None) -> Iterator[list[Row]]:
        conn = self._connect()
        full = self._nul_columns() if self._sqlite else []
        extra = "".join(f", CASE WHEN typeof({self._q(c)}) = 'text' AND instr(CAST("
                        f"{self._q(c)} AS BLOB), x'00') > 0 THEN CAST({self._q(c)} AS BLOB) "
                        f"END AS {_FULL}{i}" for i, (c, _) in enumerate(full))
        sql = f"SELECT *{extra} FROM {self._view()} WHERE {where}"
        if order_by:
            sql += f" ORDER BY {self._q(order_by)}{' DESC' if descending else ''}"
        taken = 0
        try:
            cursor = conn.cursor()
            cursor.execute(sql, *params)
            names = [d[0] for d in cursor.description]
            self._check_columns(names)
            fields = [self._canonical.get(n.lower()) for n in names]
            if full:  # the whole value of a text the SQLite driver would cut at a NUL
                fields = fields[:len(names) - len(full)] + [f"{_FULL}{f}" for _, f in full]
            while limit is None or taken < limit:
                size = self.config.batch_size if limit is None else min(
                    self.config.batch_size, limit - taken)
                batch = cursor.fetchmany(size)
                if not batch:
                    break
                taken += len(batch)
                yield [_uncut({f: self._value(v) for f, v in zip(fields, row, strict=True)
                               if f}) for row in batch]
            cursor.close()
        except UnicodeDecodeError as exc:
            self.close()
            raise SourceError(view_text.decode_error(self, exc)) from None
        except pyodbc.Error as exc:
            self.close()  # a broken connection is reopened on the next call
            raise SourceError(f"reading view {self.config.name} failed: {_odbc(exc)} "
                              f"(query: {sql})") from None

    def _nul_columns(self) -> list[tuple[str, str]]:
        """(view column, canonical field) of the mapped columns: the SQLite ODBC driver
        ends a text at its first NUL, so each is also read as a BLOB when it has one."""
        if self._columns is None:
            self._columns = self.columns()
        return [(n, self._canonical[n.lower()]) for n in self._columns
                if n.lower() in self._canonical]

    def _value(self, value: Any) -> Any:
        """Bytes stay bytes (the record rules decode them with reports.view.encoding)."""
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if self._sqlite and isinstance(value, str) and value.startswith("X'"):
            m = _HEX_LITERAL_RE.match(value)
            if m:
                return bytes.fromhex(m.group(1))
        return value

    def _check_columns(self, names: list[str]) -> None:
        have = {n.lower() for n in names}
        column = self.config.column("accessionNo")
        if column.strip('"').lower() not in have:
            raise SourceError(f"view {self.config.name} has no column {column!r} for "
                              f"accessionNo; its columns are: {', '.join(names)} "
                              "(map it under [reports.view.columns])")

    def _q(self, ident: str) -> str:
        """Plain names as written (the database folds case as it created them); others
        quoted with the driver's quote character; "quoted" names verbatim."""
        q = self._quote
        parts = ident.split(".") if not ident.startswith('"') else [ident]
        return ".".join(p if _PLAIN_RE.match(p) or p.startswith('"') or not q
                        else f"{q}{p}{q}" for p in parts)

    def _view(self) -> str:
        return self._q(self.config.name)


def _uncut(row: Row) -> Row:
    """Put the whole (BLOB) value in place of a text the driver cut at a NUL."""
    for key in [k for k in row if k.startswith(_FULL)]:
        value = row.pop(key)
        if value is not None:
            row[key[len(_FULL):]] = value
    return row


def _decoder(encoding: str):
    def decode(raw: bytes | None) -> str | bytes | None:
        if raw is None:
            return None
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            return raw  # the record rules quarantine it, saying which encoding failed
    return decode


def _inside(raw: Any, fmt: TimeFormat, first: dt.datetime, last: dt.datetime) -> bool:
    """Whether a row belongs to [first, last). A time that does not parse is kept: the
    record rules quarantine it with the value, so it is seen, not dropped."""
    if not isinstance(raw, dt.datetime):
        return True
    if fmt.date_only:
        return first.date() <= raw.date() <= last.date()
    return first <= raw < last


def _odbc(exc: pyodbc.Error) -> str:
    """pyodbc's message without the driver-manager noise, on one line."""
    parts = [str(a) for a in exc.args]
    text = parts[-1] if parts else str(exc)
    return " ".join(text.replace("\n", " ").split())
