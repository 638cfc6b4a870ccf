"""File helpers shared by the spool's writers (images) and its cleaner (upstream)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1024 * 1024


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, hex SHA-256) of a file, read in chunks (instances can be hundreds of MB)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
