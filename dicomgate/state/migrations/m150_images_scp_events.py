"""Images: what our own Portal AET refused or suffered (refusals, quarantines, process
deaths), so a C-MOVE that failed can be told apart from a PACS that refused."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (150, "images scp events", """
CREATE TABLE scp_events (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    cause       TEXT NOT NULL,   -- out_of_space | quarantined | failed | process_died
    sop_uid     TEXT,
    calling_aet TEXT,
    status      TEXT,            -- the C-STORE status we answered, e.g. 0xA700
    reason      TEXT NOT NULL
);
CREATE INDEX scp_events_at ON scp_events (at);
"""),
]
