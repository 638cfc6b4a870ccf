"""HTTP/1.1 edges of the front (RFC 9112) over a raw socket: ambiguous framing closes the
connection, the head limit is exact, closing requests end at once, HTTP/3.0 request lines and
folded headers are refused; Host and Origin must name this gateway (DNS rebinding)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from shim_fixtures import HOSPITAL

QRURL = f"/getway/reportAndFilm/api/qrurl?accessNumber=P1&modality=CT&hospitalId={HOSPITAL}"


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[bytes, float]:
    """Send `data`, read until the server closes; (everything read, seconds to EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        t0 = time.monotonic()
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got, time.monotonic() - t0


def statuses(raw: bytes) -> list[int]:
    return [int(line.split(b" ")[1]) for line in raw.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")]


def test_content_length_with_chunked_is_answered_then_closed(shim):
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    req = (f"GET {QRURL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode() + smuggled
    raw, _ = exchange(shim.port, req)
    assert statuses(raw) == [200], raw[:300]  # the smuggled request is never served
    assert b"connection: close" in raw.lower()


def head_of(size: int) -> bytes:
    """A GET whose head (request line to the blank line) is exactly `size` bytes."""
    start = f"GET {QRURL} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: ".encode()
    pad = size - len(start) - 4
    return start + b"a" * pad + b"\r\n\r\n"


@pytest.mark.parametrize("size,status", [(65536, 200), (65537, 431), (100_000, 431)])
def test_head_limit_is_exact(shim, size, status):
    data = head_of(size)
    assert len(data) == size
    raw, _ = exchange(shim.port, data)
    assert statuses(raw) == [status], raw[:200]
    assert raw.partition(b"\r\n\r\n")[2].startswith(b"{")  # the spec's JSON either way


@pytest.mark.parametrize("request_line,headers", [
    ("HTTP/1.0", ""), ("HTTP/1.1", "Connection: close\r\n")])
def test_closing_requests_end_without_linger(shim, request_line, headers):
    for _ in range(3):
        raw, seconds = exchange(shim.port, f"GET {QRURL} {request_line}\r\nHost: 127.0.0.1"
                                           f"\r\n{headers}\r\n".encode())
        assert statuses(raw) == [200] or raw.startswith(b"HTTP/1.1 200"), raw[:200]
        assert seconds < 1.0, seconds  # was 2 s (the server waited for the caller to close)


def test_http_3_request_line_refused(shim):
    raw, _ = exchange(shim.port, f"GET {QRURL} HTTP/3.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert statuses(raw) == [505], raw[:200]
    assert "HTTP/3.0" in json.loads(raw.partition(b"\r\n\r\n")[2])["message"]


def test_obs_fold_refused(shim):
    raw, _ = exchange(shim.port, f"GET {QRURL} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "X-Long: one\r\n two\r\n\r\n".encode())
    assert statuses(raw) == [400], raw[:200]
    assert "folded" in json.loads(raw.partition(b"\r\n\r\n")[2])["message"]


@pytest.mark.parametrize("headers,status", [
    ({"Host": "evil.example:{port}"}, 403),
    ({"Host": "127.0.0.1:{port}", "Origin": "http://evil.example:{port}"}, 403),
    ({"Host": "127.0.0.1:{port}", "Origin": "https://127.0.0.1:{port}"}, 403),  # scheme
    ({"Host": "localhost:{port}"}, 200),
    ({"Host": "127.0.0.1:{port}", "Origin": "http://127.0.0.1:{port}"}, 200),
])
def test_host_and_origin_must_name_this_gateway(shim, headers, status):
    sent = {k: v.format(port=shim.port) for k, v in headers.items()}
    code, r = shim.raw("GET", QRURL, headers=sent)
    assert (code, r["code"]) == (status, status if status != 200 else 200), r
    if status == 403:
        assert ("Host" in r["message"]) or ("Origin" in r["message"])
