"""The pieces with rules of their own: multipart body, STOW response, Retry-After, batches."""

from __future__ import annotations

import email
import email.policy
import time
from email.utils import formatdate

from dicomgate.state import InstanceRow
from dicomgate.upstream import stow_parse
from dicomgate.upstream.errors import retry_after
from dicomgate.upstream.multipart import MultipartStream
from dicomgate.upstream.stow_batches import make_batches


def test_multipart_stream_is_a_valid_multipart_related_body(tmp_path):
    files = []
    for i, size in enumerate((0, 1, 3 * 1024 * 1024 + 7)):
        p = tmp_path / f"{i}.dcm"
        p.write_bytes(bytes([i + 1]) * size)
        files.append(p)
    stream = MultipartStream(files)
    chunks = []
    while chunk := stream.read(16384):
        chunks.append(chunk)
    body = b"".join(chunks)
    assert len(body) == len(stream)
    msg = email.message_from_bytes(
        f"Content-Type: {stream.content_type}\r\n\r\n".encode() + body,
        policy=email.policy.HTTP)
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/dicom"] * 3
    assert [p.get_payload(decode=True) for p in parts] == [f.read_bytes() for f in files]
    import hashlib

    assert MultipartStream(files, stream.boundary).sha256_hex() == hashlib.sha256(
        body).hexdigest()


def test_stow_response_outcomes():
    body = b"""{"00081199": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["1.1"]}},
        {"00081155": {"vr": "UI", "Value": ["1.2"]}, "00081196": {"vr": "US", "Value": [45056]}}]},
      "00081198": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["2.1"]}, "00081197": {"vr": "US", "Value": [273]}},
        {"00081155": {"vr": "UI", "Value": ["2.2"]},
         "00081197": {"vr": "US", "Value": [49442]}}]}}"""
    r = stow_parse.parse(body, "application/dicom+json")
    assert r.parsed and r.stored == {"1.1", "1.2"} and r.warnings == {"1.2": "WarningReason 0xB000"}
    assert r.failed == {"2.1": stow_parse.DUPLICATE, "2.2": 0xC122}
    assert "transfer syntax not supported" in stow_parse.reason_text(0xC122)
    assert stow_parse.transient(0xA701) and not stow_parse.transient(0xC000)
    assert not stow_parse.parse(b"<NativeDicomModel/>", "application/dicom+xml").parsed
    assert not stow_parse.parse(b"not json", None).parsed


def test_retry_after_forms():
    assert retry_after("7") == 7.0
    assert retry_after("999999") == 3600.0
    assert 25 <= retry_after(formatdate(time.time() + 30, usegmt=True)) <= 31
    assert retry_after("soon") is None and retry_after(None) is None


def _row(uid: str, size: int) -> InstanceRow:
    return InstanceRow(uid, "s", None, None, None, f"/x/{uid}", size, None, "received", None,
                       None, 0.0, 0.0, None)


def test_batches_respect_count_and_bytes():
    rows = [_row(str(i), s) for i, s in enumerate([10, 10, 10, 50, 200, 10, 10])]
    batches = make_batches(rows, max_bytes=60, max_count=2)
    # 10+50 fits in 60; 200 travels alone though it exceeds the limit.
    assert [[r.sop_uid for r in b] for b in batches] == [["0", "1"], ["2", "3"], ["4"],
                                                         ["5", "6"]]
