"""Images: what the Portal AET saw, per incoming association: which C-MOVE it served (the
move originator AE and message ID its C-STOREs carried, else the studies they held), what
it stored and refused, and how it ended. The retrieve reads this record to learn what
became of its C-MOVE instead of guessing from clocks."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (590, "images portal associations", """
CREATE TABLE portal_associations (
    id           INTEGER PRIMARY KEY,
    opened_at    REAL NOT NULL,
    ended_at     REAL,
    calling_aet  TEXT,
    peer         TEXT,
    outcome      TEXT NOT NULL,      -- open | rejected | released | aborted | closed
    move_aet     TEXT,               -- Move Originator AE Title of its C-STOREs
    move_msg_id  INTEGER,            -- Move Originator Message ID of its C-STOREs
    study_uids   TEXT,               -- studies it carried, space-separated (bounded)
    stored       INTEGER NOT NULL DEFAULT 0,
    refused      INTEGER NOT NULL DEFAULT 0,
    last_at      REAL,               -- its latest C-STORE
    scp_pid      INTEGER             -- the Portal AET process that received it
);
CREATE INDEX portal_associations_opened ON portal_associations (opened_at);
CREATE INDEX portal_associations_move ON portal_associations (move_aet, move_msg_id);
ALTER TABLE dicom_events ADD COLUMN association_id INTEGER;
"""),
]
