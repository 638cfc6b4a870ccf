"""The HTTP/1.1 checks the front adds to h11's parsing (RFC 9112), made once h11 has read a
request head: what h11 accepts but a server should not."""

from __future__ import annotations

import re

import h11

from .refusals import MAX_HEAD

_OBS_FOLD = re.compile(rb"\n[ \t]")


def protocol_check(request: h11.Request, head: bytes, head_len: int) -> bool:
    """Raise RemoteProtocolError (answered, then the connection closed) for a head over
    MAX_HEAD bytes (the limit is exact: h11's own bites only past its read buffer), an HTTP
    version other than 1.0 and 1.1 (505), or a folded header line (obs-fold, §5.2: 400).
    True when the connection must close after the answer: Content-Length together with
    Transfer-Encoding (§6.1: the framing is ambiguous, whatever follows may be smuggled)."""
    if head_len > MAX_HEAD:
        raise h11.RemoteProtocolError(f"request head of {head_len} bytes", 431)
    if request.http_version not in (b"1.0", b"1.1"):
        raise h11.RemoteProtocolError(
            f"HTTP/{request.http_version.decode('ascii', 'replace')} is not served (HTTP/1.1 "
            "or HTTP/1.0)", 505)
    if _OBS_FOLD.search(head, 0, max(head_len - 2, 0)):
        raise h11.RemoteProtocolError("a header line is folded (obs-fold; send each header "
                                      "on one line)", 400)
    names = {name for name, _ in request.headers}
    return b"content-length" in names and b"transfer-encoding" in names


def escape_target(data: bytes) -> bytes:
    """Percent-encode raw non-ASCII bytes in the request line, as some PACS clients send
    UTF-8 URLs unencoded (h11 would refuse them); parameters are then decoded strictly."""
    line_end = data.find(b"\n")
    line = data if line_end < 0 else data[:line_end]
    if line.isascii():
        return data
    return b"".join(bytes([b]) if b < 128 else b"%%%02X" % b for b in line) + \
        data[len(line):]


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1").strip()
    return ""


def ascii_query(raw: bytes) -> str:
    """Raw non-ASCII bytes in a query are percent-encoded, so the strict UTF-8 decoding of
    the parameters sees exactly the bytes sent."""
    if raw.isascii():
        return raw.decode("ascii")
    return "".join(chr(b) if b < 128 else f"%{b:02X}" for b in raw)
