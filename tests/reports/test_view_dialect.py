"""Per-database choices and the time-format rules that need no server."""

from __future__ import annotations

import datetime as dt
import struct
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomgate.reports import time_format
from dicomgate.reports.view_dialect import datetimeoffset, detect

TZ = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("dbms", "name", "length"), [
    ("PostgreSQL", "postgresql", "char_length"), ("KingbaseES", "kingbase", "char_length"),
    ("MariaDB", "mysql", "CHAR_LENGTH"), ("MySQL", "mysql", "CHAR_LENGTH"),
    ("Microsoft SQL Server", "sqlserver", "LEN"), ("Oracle", "oracle", "LENGTH"),
    ("DM", "dm", "LENGTH"), ("DM8", "dm", "LENGTH"), ("SQLite", "sqlite", "length"),
    ("Informix", "other", None)])
def test_the_database_is_known_by_its_dbms_name(dbms, name, length):
    dialect = detect(dbms)
    assert (dialect.name, dialect.char_length) == (name, length)


def test_session_zone_statements():
    assert detect("PostgreSQL").session_zone(TZ) == ["SET TIME ZONE 'Asia/Shanghai'"]
    assert detect("MariaDB").session_zone(TZ) == ["SET time_zone = 'Asia/Shanghai'",
                                                  "SET time_zone = '+08:00'"]
    assert detect("Oracle").session_zone(ZoneInfo("America/St_Johns"))[1].endswith(
        ("'-03:30'", "'-02:30'"))
    assert detect("Microsoft SQL Server").session_zone(TZ) == []


def test_sql_server_datetimeoffset_is_an_instant():
    raw = struct.pack("<6hI2h", 2026, 12, 4, 23, 4, 22, 500_000_000, 8, 0)
    value = datetimeoffset(raw)
    assert value == dt.datetime(2026, 12, 4, 15, 4, 22, 500_000, tzinfo=dt.UTC)
    fmt = time_format.learn([value])
    assert fmt.kind == "datetime" and fmt.offsets
    lo, hi = fmt.bounds(dt.datetime(2026, 12, 4, 23, 0), dt.datetime(2026, 12, 5, 0, 0), TZ,
                        text_datetimes=False)
    assert (lo, hi) == ("2026-12-04 23:00:00+08:00", "2026-12-05 00:00:00+08:00")


GOOD = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)
                    ).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
BAD = st.sampled_from(["not a time", "待定", "", "2026/1/5 2:5:1", "??", "NULL"])


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(GOOD, min_size=1, max_size=30), st.lists(BAD, max_size=30), st.randoms())
def test_the_format_is_learned_from_the_values_that_parse(good, bad, rnd):
    values = good + bad
    rnd.shuffle(values)
    fmt = time_format.learn_majority(values)
    if len(good) * 2 >= len([v for v in values if v is not None]):
        assert fmt is not None and fmt.name == "yyyy-MM-dd HH:mm:ss"
    else:
        assert fmt is None  # most values are not times: the column stops loudly
