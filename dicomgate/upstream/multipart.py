"""A multipart/related body streamed from spool files: one file open at a time.

requests sends it with a Content-Length (it has `__len__`) and reads it in blocks, so a
32 MB batch never sits in memory and the cloud needs no chunked-encoding support.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

CONTENT_TYPE = "application/dicom"
BLOCK = 1024 * 1024


class MultipartStream:
    """File-like enough for requests: `read` and `__len__` (no `tell`: requests would then
    take the length for unknown and fall back to chunked encoding)."""

    def __init__(self, paths: list[Path], boundary: str | None = None):
        self.boundary = boundary or uuid.uuid4().hex
        self.paths = [Path(p) for p in paths]
        head = f"Content-Type: {CONTENT_TYPE}\r\n\r\n".encode()
        # The preamble of each part; the file follows; the closing delimiter ends the body.
        self._heads = [(b"\r\n" if i else b"") + b"--" + self.boundary.encode() + b"\r\n" + head
                       for i in range(len(self.paths))]
        self._tail = b"\r\n--" + self.boundary.encode() + b"--\r\n"
        self._sizes = [os.stat(p).st_size for p in self.paths]  # FileNotFoundError: caller
        self._length = sum(len(h) for h in self._heads) + sum(self._sizes) + len(self._tail)
        self._pieces = self._generate()
        self._cur, self._pos = b"", 0

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{CONTENT_TYPE}"; boundary={self.boundary}'

    def __len__(self) -> int:
        return self._length

    def _generate(self):
        for head, path, size in zip(self._heads, self.paths, self._sizes, strict=True):
            yield head
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(BLOCK):
                    sent += len(chunk)
                    yield chunk
            if sent != size:  # the file changed under us: the Content-Length would lie
                raise OSError(f"spool file {path} changed size while being sent")
        yield self._tail

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            rest = self._cur[self._pos:] + b"".join(self._pieces)
            self._cur, self._pos = b"", 0
            return rest
        out: list[bytes] = []
        need = size
        while need > 0:
            if self._pos >= len(self._cur):
                nxt = next(self._pieces, None)
                if nxt is None:
                    break
                self._cur, self._pos = nxt, 0
            take = self._cur[self._pos:self._pos + need]  # copies only what is returned
            self._pos += len(take)
            need -= len(take)
            out.append(take)
        return b"".join(out)

    def sha256_hex(self) -> str:
        """The body's hash without building it (for HMAC signing)."""
        h = hashlib.sha256()
        for head, path in zip(self._heads, self.paths, strict=True):
            h.update(head)
            with open(path, "rb") as f:
                while chunk := f.read(BLOCK):
                    h.update(chunk)
        h.update(self._tail)
        return h.hexdigest()
