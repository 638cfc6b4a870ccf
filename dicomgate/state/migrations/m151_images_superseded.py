"""Images: instances received again with new content after the cloud may already hold an
older version (same SOP Instance UID, other bytes). Upstream must make the cloud hold the
new version, or flag it, before it may count the instance as delivered."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (151, "images superseded instances", """
CREATE TABLE superseded (
    sop_uid     TEXT PRIMARY KEY,
    old_sha256  TEXT NOT NULL,   -- the version the cloud may hold
    at          REAL NOT NULL
);
"""),
]
