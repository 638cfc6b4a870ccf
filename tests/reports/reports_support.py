"""Helpers for the reports tests: gateway configuration files, a SQLite PACS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reports_pacs import COLUMNS, TABLES, VIEW

from dicomgate.config import load
from dicomgate.state import Store
from tests.support import engines, gateway_toml, toml_table, write_config


def reports_config(tmp: Path, reports: str, extra: str = "") -> Path:
    """A gateway with a [pacs] and the given [reports] section (`@COLUMNS@` is replaced by
    the test PACS's column mapping); `extra` appends sections."""
    columns = "\n".join(f'{k} = "{v}"' for k, v in COLUMNS.items())
    text = (gateway_toml(tmp / "state", 11112, gateway={"timezone": "Asia/Shanghai"})
            + toml_table("pacs", ae_title="HOSPPACS", host="127.0.0.1", port=104)
            + f"\n{reports}\n{extra}\n")
    return write_config(tmp / "dicomgate.toml", text.replace("@COLUMNS@", columns))


def view_reports(connection: str, extra: str = "") -> str:
    return f"""
[reports]
source = "view"
poll_interval = "2m"
overlap = "1h"
settle_delay = "5m"
initial_lookback = "1d"

[reports.view]
connection = "{connection}"
name = "View_Pacs_Text_Info"
batch_size = 7
{extra}

[reports.view.columns]
@COLUMNS@
"""


class Pacs:
    """The hospital side of a SQLite PACS database (written with sqlite3, read via ODBC)."""

    def __init__(self, path: Path, encoding: str = "utf-8", ts: str = "TEXT"):
        self.path = path
        self.encoding = encoding
        with self.db() as c:  # ts: the declared type of the time columns
            c.executescript(TABLES.format(ts=ts) + VIEW.format(acc="e.EXAM_NO"))

    def db(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, isolation_level=None)
        if self.encoding != "utf-8":  # store text as the PACS's own encoding (bytes)
            c.text_factory = bytes
        return c

    def run(self, sql: str, params: tuple = ()) -> None:
        c = self.db()
        try:
            c.execute(sql, tuple(self._enc(p) for p in params))
            if self.encoding != "utf-8":  # the GBK bytes become TEXT, as in a GBK database
                for table in ("RIS_EXAM", "RIS_REPORT", "RIS_FEE"):
                    for col in c.execute(f"SELECT name FROM pragma_table_info('{table}')"):
                        name = col[0].decode() if isinstance(col[0], bytes) else col[0]
                        c.execute(f"UPDATE {table} SET {name} = CAST({name} AS TEXT) "
                                  f"WHERE typeof({name}) = 'blob'")
        finally:
            c.close()

    def _enc(self, value):
        if isinstance(value, str) and not value.isascii() and self.encoding != "utf-8":
            # SQLite has no GBK: keep the raw bytes as TEXT like a GBK database would
            return sqlite3.Binary(value.encode(self.encoding))
        return value


def open_store(config: Path) -> Store:
    """The store the configuration file names."""
    return engines.open_store(load(config))
