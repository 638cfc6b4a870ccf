"""Mode 1: read View_Pacs_Text_Info (or the site's view) over ODBC with pyodbc.

Read-only: the connection asks for read-only access and only SELECTs with bound
parameters are sent; identifiers come from the configuration, never from data.
Rows arrive in `fetchmany` batches so memory stays flat; after an error the
connection is dropped and the next call opens a new one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pyodbc
import structlog

from ..config.model import ViewConfig
from ..exam_record import CANONICAL_FIELDS
from .events import EventType
from .source import Row, SourceError

log = structlog.get_logger("dicomgate.reports.view")

# Letters (any script), digits, _ $ # and spaces; dots separate schema and view. A name
# given in double quotes is used verbatim (a case-sensitive PostgreSQL/Oracle name).
_IDENT_RE = re.compile(r'^([\w$# ]+|"[^"]+")$')
_PLAIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # unquoted: the database folds its case


class ViewSource:
    name = "view"

    def __init__(self, config: ViewConfig):
        self.config = config
        self._conn: pyodbc.Connection | None = None
        self._quote = '"'
        self._text_times = False
        for part in [*config.name.split("."), *(c for _, c in config.columns)]:
            if not _IDENT_RE.match(part):
                raise SourceError(f"reports.view: {part!r} is not a plain SQL identifier "
                                  "(letters, digits, _ $ #; schema.view for a schema)")
        # site column (case-insensitive) -> canonical field
        mapped = dict(config.columns)
        self._canonical = {mapped.get(f, f).strip('"').lower(): f for f in CANONICAL_FIELDS}

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
        if self.config.encoding:  # a GBK database: narrow text arrives in that encoding
            conn.setdecoding(pyodbc.SQL_CHAR, encoding=self.config.encoding)
            conn.setencoding(encoding=self.config.encoding)
        self._quote = (conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) or "").strip()
        driver = str(conn.getinfo(pyodbc.SQL_DRIVER_NAME) or "").lower()
        # SQLite keeps times as text; a bound TIMESTAMP becomes "... .000" and misorders.
        self._text_times = "sqlite" in driver
        self._conn = conn
        log.info("reports.view_connected", view=self.config.name, driver=driver)
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except pyodbc.Error:
                pass

    # -- queries --------------------------------------------------------------------------
    def window(self, event: EventType, start: dt.datetime, end: dt.datetime
               ) -> Iterator[list[Row]]:
        column = self.config.column(event.time_field)
        yield from self._select(f"{self._q(column)} >= ? AND {self._q(column)} < ?",
                                (self._time(start), self._time(end)), required=column)

    def accession(self, accession_no: str) -> list[Row]:
        column = self.config.column("accessionNo")
        out: list[Row] = []
        for batch in self._select(f"{self._q(column)} = ?", (accession_no,), required=column):
            out.extend(batch)
        return out

    def _select(self, where: str, params: tuple, required: str) -> Iterator[list[Row]]:
        conn = self._connect()
        sql = f"SELECT * FROM {self._view()} WHERE {where}"
        try:
            cursor = conn.cursor()
            cursor.execute(sql, *params)
            names = [d[0] for d in cursor.description]
            self._check_columns(names)
            fields = [self._canonical.get(n.lower()) for n in names]
            while True:
                batch = cursor.fetchmany(self.config.batch_size)
                if not batch:
                    break
                yield [{f: v for f, v in zip(fields, row, strict=True) if f} for row in batch]
            cursor.close()
        except pyodbc.Error as exc:
            self.close()  # a broken connection is reopened on the next call
            raise SourceError(f"reading view {self.config.name} failed: {_odbc(exc)} "
                              f"(query: {sql})") from None

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

    def _time(self, value: dt.datetime) -> Any:
        value = value.replace(microsecond=0, tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S") if self._text_times else value


def _odbc(exc: pyodbc.Error) -> str:
    """pyodbc's message without the driver-manager noise, on one line."""
    parts = [str(a) for a in exc.args]
    text = parts[-1] if parts else str(exc)
    return " ".join(text.replace("\n", " ").split())
