"""What differs between the databases a hospital runs, as the view source needs it.

Per database: how to put the session in the gateway's zone (so that times that carry a
zone are rendered as the right wall-clock time and a window bound as a naive local time
is compared in the same zone), how to read its clock, how it counts characters, and how
its ODBC driver's text is best decoded. Chosen from the driver's SQL_DBMS_NAME.

Tested here: SQLite (SQLite3 ODBC), PostgreSQL (psqlODBC), MariaDB (Connector/ODBC 3.1).
The others follow their documentation and are marked untested in docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pyodbc
import structlog

from ..config.model import ViewConfig

log = structlog.get_logger("dicomgate.reports.view")


@dataclass(frozen=True)
class Dialect:
    name: str
    # SQL function giving a text value's length in characters
    char_length: str | None
    # SELECT statements giving the database's current time: one per kind of time its
    # columns are usually written with (an instant, and the server's naive local time)
    clock: tuple[str, ...] = ()
    # how the wide text is decoded when reports.view.text_decoding = "auto"
    wide: str = "utf-16le"
    # the character set the server sends text in (read as the driver's narrow text, both
    # wide and narrow are then decoded with it)
    charset_sql: str | None = None
    # SQL Server's LEN() does not count trailing spaces
    ignores_trailing_spaces: bool = False
    # the zone the server's own naive times (NOW() into a DATETIME) are in, unaffected by
    # the session zone dicomgate sets
    server_zone_sql: str | None = None

    def session_zone(self, tz: ZoneInfo) -> list[str]:
        """Statements to try, in order, until one succeeds."""
        offset = _offset(tz)
        if self.name in ("postgresql", "kingbase"):
            return [f"SET TIME ZONE '{tz.key}'"]
        if self.name == "mysql":  # named zones only when the server's zone tables are loaded
            return [f"SET time_zone = '{tz.key}'", f"SET time_zone = '{offset}'"]
        if self.name == "oracle":
            return [f"ALTER SESSION SET TIME_ZONE = '{tz.key}'",
                    f"ALTER SESSION SET TIME_ZONE = '{offset}'"]
        if self.name == "dm":
            return [f"ALTER SESSION SET TIME_ZONE = '{offset}'"]
        return []  # SQL Server, SQLite: no session zone


def _offset(tz: ZoneInfo) -> str:
    """The zone's UTC offset now, as +HH:MM (a fixed offset: the named zone is preferred)."""
    seconds = int(dt.datetime.now(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


DIALECTS = {
    "postgresql": Dialect("postgresql", "char_length", ("SELECT now()",), server_zone_sql=(
        "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'")),
    "kingbase": Dialect("kingbase", "char_length", ("SELECT now()",)),
    # Connector/ODBC's UTF-16 conversion mangles the end of texts with 4-byte characters:
    # its text is read in the connection's character set (CHARSET=, utf8mb4 by default)
    "mysql": Dialect("mysql", "CHAR_LENGTH", ("SELECT NOW()",),
                     charset_sql="SELECT @@character_set_results",
                     server_zone_sql="SELECT @@global.time_zone"),
    "sqlserver": Dialect("sqlserver", "LEN", ("SELECT SYSDATETIMEOFFSET()",
                                              "SELECT GETDATE()"),
                         ignores_trailing_spaces=True),
    "oracle": Dialect("oracle", "LENGTH", ("SELECT SYSTIMESTAMP FROM DUAL",
                                           "SELECT SYSDATE FROM DUAL")),
    "dm": Dialect("dm", "LENGTH", ("SELECT SYSDATE",)),
    "sqlite": Dialect("sqlite", "length"),  # a file: its clock is the gateway's own
    "other": Dialect("other", None),
}


def zone_offset(name: str, at: dt.datetime) -> dt.timedelta | None:
    """The UTC offset at `at` of a zone as a database names it ('UTC', 'Asia/Shanghai',
    '+08:00'); None when it cannot be known here (MySQL 'SYSTEM', an abbreviation)."""
    text = name.strip()
    if len(text) == 6 and text[0] in "+-" and text[3] == ":":
        sign = -1 if text[0] == "-" else 1
        return sign * dt.timedelta(hours=int(text[1:3]), minutes=int(text[4:]))
    try:
        return at.astimezone(ZoneInfo(text)).utcoffset()
    except (ValueError, KeyError, OSError):  # not an IANA name
        return None


def detect(dbms_name: str) -> Dialect:
    """The dialect of a driver's SQL_DBMS_NAME ("PostgreSQL", "MariaDB", "Microsoft SQL
    Server", "Oracle", "DM", "KingbaseES", "SQLite", ...)."""
    name = dbms_name.lower()
    for key, marks in (("kingbase", ("kingbase",)), ("postgresql", ("postgres",)),
                       ("mysql", ("mysql", "mariadb")), ("sqlserver", ("sql server",)),
                       ("oracle", ("oracle",)), ("sqlite", ("sqlite",)),
                       ("dm", ("dameng", "dm8", "dm7"))):
        if any(m in name for m in marks):
            return DIALECTS[key]
    return DIALECTS["dm" if name.split(" ")[0] == "dm" else "other"]


# -- a new connection -----------------------------------------------------------------------
# MySQL character set names -> Python codecs (MySQL's latin1 is Windows-1252)
CHARSETS = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "gbk": "gbk",
            "gb18030": "gb18030", "gb2312": "gbk", "latin1": "cp1252", "big5": "big5"}
CHINESE_CAPABLE = ("utf-8", "gbk", "gb18030")


@dataclass(frozen=True)
class Session:
    dialect: Dialect
    wide: str  # how wide text is decoded
    # the character set the server converts every text to (a GBK table's too), when it
    # says; reports.view.encoding then does not apply to the driver's text
    charset: str | None = None


def prepare(conn: pyodbc.Connection, config: ViewConfig, tz: ZoneInfo) -> Session:
    """Set up a new connection for its database: text decoding, the session's zone, and a
    converter for SQL Server's datetimeoffset (which pyodbc cannot read by itself)."""
    dialect = detect(str(conn.getinfo(pyodbc.SQL_DBMS_NAME) or ""))
    wide = config.text_decoding if config.text_decoding != "auto" else dialect.wide
    charset = None
    if dialect.charset_sql:
        try:
            charset = str(conn.cursor().execute(dialect.charset_sql).fetchone()[0] or "")
        except pyodbc.Error as exc:
            log.warning("reports.view_charset_unknown", sql=dialect.charset_sql,
                        error=str(exc))
        codec = CHARSETS.get((charset or "").lower())
        if codec and config.text_decoding == "auto":
            wide = codec
            conn.setdecoding(pyodbc.SQL_CHAR, encoding=codec)
    conn.setdecoding(pyodbc.SQL_WCHAR, encoding=wide)
    conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, datetimeoffset)
    statements = dialect.session_zone(tz)
    if statements and _first_that_works(conn, statements) is None:
        log.warning("reports.view_session_zone_failed", dbms=dialect.name, zone=tz.key,
                    tried=statements)
    return Session(dialect, wide, charset)


def _first_that_works(conn: pyodbc.Connection, statements: tuple[str, ...] | list[str]
                      ) -> str | None:
    for sql in statements:
        try:
            conn.cursor().execute(sql).close()
            return sql
        except pyodbc.Error as exc:
            log.debug("reports.view_session_statement_failed", sql=sql, error=str(exc))
    return None


SQL_SS_TIMESTAMPOFFSET = -155


def datetimeoffset(raw: bytes | None) -> dt.datetime | None:
    """SQL Server's SQL_SS_TIMESTAMPOFFSET_STRUCT as an aware datetime (an instant)."""
    if raw is None:
        return None
    y, mo, d, h, mi, s, frac, tzh, tzm = struct.unpack("<6hI2h", raw)
    return dt.datetime(y, mo, d, h, mi, s, frac // 1000,
                       dt.timezone(dt.timedelta(hours=tzh, minutes=tzm)))
