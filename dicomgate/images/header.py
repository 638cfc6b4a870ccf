"""The few values a received instance is recorded by, read straight from its Part 10 bytes.

pydicom's `dcmread` builds a Dataset for the whole header even with `specific_tags` (a
tenth of the Portal AET's CPU while it received one large study). Here the File Meta and
the top-level elements up to Pixel Data are walked in the file's first READ bytes, for
the little-endian syntaxes every PACS sends (implicit, explicit and the compressed ones);
anything else (big endian, deflate, a header longer than READ, an element it does not
expect) answers None and the caller reads the file with pydicom as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

READ = 64 * 1024
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
# Encapsulated syntaxes (JPEG family, JPEG-LS, JPEG 2000, RLE, MPEG, HTJ2K): explicit VR LE
ENCAPSULATED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
PIXEL_DATA = 0x7FE00010
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_UIDS = {0x00080016: "sop_class_uid", 0x00080018: "sop_uid", 0x0020000D: "study_uid",
         0x0020000E: "series_uid"}
_US = {0x00280002: "samples", 0x00280010: "rows", 0x00280011: "cols", 0x00280100: "bits"}
_FRAMES = 0x00280008
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 12
_U16, _U32, _TAG = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HH")


class _Unsure(Exception):
    """Not something this reader handles: let pydicom read it."""


@dataclass
class Header:
    """What identify() needs; empty strings / None where the file has no such element."""
    transfer_syntax: str = ""
    media_sop_class_uid: str = ""
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    rows: int | None = None
    cols: int | None = None
    bits: int | None = None
    samples: int | None = None
    frames: str | None = None
    pixel_length: int | None = None  # None: no Pixel Data element


def read(path: Path) -> Header | None:
    """The header values of the Part 10 file at `path`, or None (read it with pydicom)."""
    with open(path, "rb") as f:
        buf = f.read(READ)
    try:
        return _parse(buf, whole=len(buf) < READ)
    except (_Unsure, struct.error, UnicodeDecodeError, ValueError):
        return None


def _parse(buf: bytes, whole: bool) -> Header:
    if buf[128:132] != b"DICM":
        raise _Unsure
    h, pos = Header(), 132
    while pos + 8 <= len(buf) and _U16.unpack_from(buf, pos)[0] == 0x0002:
        tag, vr, length, pos = _element(buf, pos, implicit=False)
        if tag == 0x00020002:
            h.media_sop_class_uid = _text(buf, pos, length)
        elif tag == 0x00020010:
            h.transfer_syntax = _text(buf, pos, length)
        pos += length
    ts = h.transfer_syntax
    if ts != IMPLICIT and ts != EXPLICIT and not ts.startswith(ENCAPSULATED_PREFIXES):
        raise _Unsure
    _top_level(buf, pos, ts == IMPLICIT, whole, h)
    return h


def _top_level(buf: bytes, pos: int, implicit: bool, whole: bool, h: Header) -> None:
    while pos + 8 <= len(buf):
        tag, vr, length, pos = _element(buf, pos, implicit)
        if tag >= PIXEL_DATA:
            if tag == PIXEL_DATA:
                h.pixel_length = length
            return
        if length == 0xFFFFFFFF:
            if not implicit and vr != b"SQ":
                raise _Unsure
            pos = _skip_items(buf, pos, implicit, 1)
            continue
        if pos + length > len(buf):  # past what was read, or past the end of the file
            raise _Unsure
        if tag in _UIDS:
            setattr(h, _UIDS[tag], _text(buf, pos, length))
        elif tag in _US:
            if length != 2:
                raise _Unsure
            setattr(h, _US[tag], _U16.unpack_from(buf, pos)[0])
        elif tag == _FRAMES:
            h.frames = _text(buf, pos, length)
        pos += length
    if not whole or pos != len(buf):  # the header goes on past what was read, or is cut
        raise _Unsure


def _element(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"", value length, where the value starts)."""
    group, elem = _TAG.unpack_from(buf, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, b"", _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        return tag, vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
    if not vr.isalpha() or not vr.isupper():
        raise _Unsure
    return tag, vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _skip_items(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Past a sequence of undefined length (its items, nested ones too)."""
    if depth > _MAX_DEPTH:
        raise _Unsure
    while True:
        if pos + 8 > len(buf):
            raise _Unsure
        tag, _, length, pos = _element(buf, pos, implicit=True)
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Unsure
        pos = _skip_item(buf, pos, implicit, depth) if length == 0xFFFFFFFF else pos + length


def _skip_item(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Past the elements of an item of undefined length, up to its delimiter."""
    while True:
        if pos + 12 > len(buf):
            raise _Unsure
        tag, vr, length, pos = _element(buf, pos, implicit)
        if tag == _ITEM_END:
            return pos
        if length == 0xFFFFFFFF:
            if not implicit and vr != b"SQ":
                raise _Unsure
            pos = _skip_items(buf, pos, implicit, depth + 1)
        else:
            pos += length


def _text(buf: bytes, pos: int, length: int) -> str:
    return buf[pos:pos + length].decode("ascii").rstrip("\0 ").strip()
