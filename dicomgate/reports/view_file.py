"""File-based view sources (SQLite, Access): the file a connection has open.

Such a database is often rewritten as a new file renamed over the old one; an open
connection keeps reading the deleted file and sees nothing new. The source remembers the
file's identity (device, inode) at connect and compares it with what the path names now.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyodbc

from .source import SourceError


@dataclass(frozen=True)
class ViewFile:
    path: str
    identity: tuple[int, int]  # (st_dev, st_ino)

    @classmethod
    def of(cls, conn: pyodbc.Connection) -> ViewFile | None:
        """The file a file-based driver has open (its database name is the path)."""
        try:
            name = str(conn.getinfo(pyodbc.SQL_DATABASE_NAME) or "")
        except pyodbc.Error:
            return None
        if not os.path.isabs(name) or not os.path.isfile(name):
            return None
        st = os.stat(name)
        return cls(name, (st.st_dev, st.st_ino))

    def replaced(self) -> bool:
        """Whether the path now names another file; SourceError when it names none."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise SourceError(f"the view's database file {self.path} is gone "
                              f"({exc.strerror}): it was deleted or is being replaced; "
                              "reports.view.connection must name the file the PACS "
                              "writes") from None
        return (st.st_dev, st.st_ino) != self.identity
