"""What the poller needs from a report source (the ODBC view or the PACS HTTP API)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Protocol

from .events import EventType

Row = dict[str, Any]  # canonical field name -> raw value


class SourceError(Exception):
    """The source cannot be read; the message says what is wrong and what to check."""


class Source(Protocol):
    name: str

    def window(self, event: EventType, start: dt.datetime, end: dt.datetime
               ) -> Iterator[list[Row]]:
        """The rows whose event time is in [start, end), in batches (naive local times)."""
        ...

    def accession(self, accession_no: str) -> list[Row]:
        """The rows of one accession number, with no time limit."""
        ...

    def close(self) -> None: ...
