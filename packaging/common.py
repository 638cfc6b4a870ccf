"""What the bundle's build steps share: the error they stop with, logging, hashing."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


class BundleError(Exception):
    """A build step cannot go on; the message says what is missing."""


def log(msg: str) -> None:
    print(f"bundle: {msg}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
