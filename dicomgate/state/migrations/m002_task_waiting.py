"""Foundation: what a pending task waits for (`tasks.WaitFor` cause: PACS, disk space...),
so `dicomgate status` can group waiting work by reason without a running daemon."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (2, "task waiting_for", "ALTER TABLE tasks ADD COLUMN waiting_for TEXT;"),
]
