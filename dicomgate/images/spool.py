"""The spool layout and its file operations: Part 10 headers, atomic writes, quarantine.

`<state_dir>/spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`, written to a temp file in
the same directory and renamed, so a crash never leaves a half file under a final name.
Files are 0600, directories 0700 (see docs/internals.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import generate_uid

from .. import __version__, spool_layout
from ..files import sha256_file

# A fixed Implementation Class UID for files dicomgate writes (derived, not random).
IMPLEMENTATION_UID = generate_uid(entropy_srcs=["dicomgate implementation"])
IMPLEMENTATION_VERSION = f"DICOMGATE_{__version__}"[:16]
CHUNK = 1024 * 1024
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def valid_uid(value: object) -> bool:
    """A UID safe to use as a path component: digits and dots, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


def part10_header(sop_class_uid: str, sop_uid: str, transfer_syntax: str,
                  source_aet: str | None = None) -> bytes:
    """Preamble, 'DICM' and File Meta Information for a dataset received over the network."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if source_aet:
        meta.SourceApplicationEntityTitle = source_aet
    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    return buf.getvalue()


def file_meta_bytes(sop_class_uid: str, sop_uid: str, transfer_syntax: str,
                    implementation_uid: str, implementation_version: str) -> bytes | None:
    """The File Meta Information group (0002,xxxx) as pydicom's write_file_meta_info writes
    these five values, byte for byte, without building a Dataset (every received instance
    gets one); None for a value it does not expect (pydicom then writes it)."""
    values = (sop_class_uid, sop_uid, transfer_syntax, implementation_uid,
              implementation_version)
    if not all(isinstance(v, str) and v and v.isascii() for v in values):
        return None
    uids = [v.encode() for v in values[:4]]
    body = [_element(0x0001, b"OB", b"\x00\x01")]
    for elem, uid in zip((0x0002, 0x0003, 0x0010, 0x0012), uids, strict=True):
        body.append(_element(elem, b"UI", uid + b"\0" * (len(uid) % 2)))
    version = implementation_version.encode()
    body.append(_element(0x0013, b"SH", version + b" " * (len(version) % 2)))
    rest = b"".join(body)
    return _element(0x0000, b"UL", struct.pack("<I", len(rest))) + rest


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element, explicit VR little endian."""
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def dataset_offset(f: BinaryIO) -> int:
    """Where the dataset starts in a Part 10 file (after the group 0002 elements)."""
    f.seek(128)
    head = f.read(16)
    if head[:4] != b"DICM" or head[4:8] != b"\x02\x00\x00\x00" or head[8:10] != b"UL":
        raise ValueError("no File Meta Information Group Length (0002,0000)")
    return 144 + int.from_bytes(head[12:16], "little")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _secure_mkdir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


class Spool:
    def __init__(self, state_dir: Path):
        self.root = spool_layout.spool_dir(state_dir)
        self.quarantine_dir = spool_layout.quarantine_dir(state_dir)
        self.incoming = self.root / ".incoming"
        self.state_dir = state_dir  # directories are made on first use: setup() starts nothing

    def final_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return spool_layout.instance_path(self.root, study_uid, series_uid, sop_uid)

    def free_bytes(self) -> int:
        """The least free space of the file systems that receive files."""
        return min(free for _, _, free in self.filesystems())

    def filesystems(self) -> list[tuple[str, Path, int]]:
        """(what, path, free bytes) for each file system that receives files: the spool
        (and its incoming temp files), the quarantine, the state dir (the database). A
        folder not made yet is measured where it will be made; one file system shared by
        several is listed once, under the first name."""
        out: list[tuple[str, Path, int]] = []
        seen: set[int] = set()
        for what, path in (("spool", self.root), ("quarantine", self.quarantine_dir),
                           ("state dir", self.state_dir)):
            where = _existing(path)
            dev = os.stat(where).st_dev
            if dev in seen:
                continue
            seen.add(dev)
            out.append((what, path, shutil.disk_usage(where).free))
        return out

    def short_of_space(self, min_free: int) -> str | None:
        """Which receiving file system is below `min_free`, in words; None when all have
        room."""
        short = [f"{what} {path}: {free / 1e6:.0f} MB free" for what, path, free
                 in self.filesystems() if free < min_free]
        if not short:
            return None
        return (f"free space below dicom.min_free_disk ({min_free / 1e6:.0f} MB) on "
                + "; ".join(short))

    def incoming_dir(self) -> Path:
        _secure_mkdir(self.incoming)
        return self.incoming

    def temp_path(self) -> Path:
        """A temp file on the spool's file system, so the final rename is atomic."""
        return self.incoming_dir() / f"{uuid.uuid4().hex}.part"

    def digest(self, path: Path) -> tuple[int, str]:
        return sha256_file(path)

    def clean_incoming(self, suffix: str = "") -> int:
        """Temp files (ending with `suffix`) left by a crash of their writer."""
        n = 0
        if self.incoming.is_dir():
            for p in self.incoming.iterdir():
                if p.name.endswith(suffix):
                    p.unlink(missing_ok=True)
                    n += 1
        return n

    def clean_stale(self, age: float) -> int:
        """Temp files nobody has written to for `age` seconds (any writer is done)."""
        n = 0
        if self.incoming.is_dir():
            limit = time.time() - age
            for p in self.incoming.iterdir():
                try:
                    if p.is_file() and p.stat().st_mtime < limit:
                        p.unlink()
                        n += 1
                except OSError:
                    continue
        return n

    def write(self, dest: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Write chunks to `dest` (0600); returns (size, sha256).

        No fsync: the rename keeps a crash from exposing a half file, and after a power
        loss the completeness check compares each file's size with its row and fetches
        again what does not match (the PACS still has it)."""
        digest, size = hashlib.sha256(), 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                for chunk in chunks:
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
        except BaseException:
            os.close(fd)
            dest.unlink(missing_ok=True)
            raise
        os.close(fd)
        return size, digest.hexdigest()

    def place(self, temp: Path, final: Path) -> None:
        """Move a finished temp file under its final name (atomic on one file system)."""
        _secure_mkdir(final.parent)
        os.replace(temp, final)

    def quarantine(self, src: Path | None, reason: str, context: dict[str, Any],
                   data: bytes | None = None) -> Path:
        """Keep what could not be stored, with the reason beside it; returns the .dcm path."""
        _secure_mkdir(self.quarantine_dir)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = self.quarantine_dir / f"{stamp}-{uuid.uuid4().hex[:12]}"
        target = base.with_suffix(".dcm")
        if src is not None:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                shutil.copyfileobj(f, out, CHUNK)
        else:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data or b"")
        note = {"reason": reason, "at": time.time(), **context}
        fd = os.open(base.with_suffix(".json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(note, out, ensure_ascii=False, indent=2)
        return target

    def quarantined(self) -> int:
        if not self.quarantine_dir.is_dir():
            return 0
        return sum(1 for _ in self.quarantine_dir.glob("*.json"))


def file_chunks(path: Path, offset: int = 0) -> Iterable[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK):
            yield chunk
