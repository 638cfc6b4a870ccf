"""Hostile and broken input over real HTTP: invalid UTF-8, nested JSON, malformed requests.
Every refusal is the spec's JSON, including those the HTTP layer itself makes."""

from __future__ import annotations

import json
import socket

import pytest
from shim_fixtures import HOSPITAL
from test_shim_deletion import DELETE

QRURL = "/getway/reportAndFilm/api/qrurl"
H = f"&hospitalId={HOSPITAL}".encode()
LOOKUP = "/iuWorkStation/swipingIdCardNo"


def send_raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict]:
    """Exactly these bytes on the wire; the answer's status and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head, head
    return status, json.loads(body.decode("utf-8"))


def get(port: int, target: bytes) -> tuple[int, dict]:
    return send_raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("value", [b"%FF", b"%FE", b"A%C3", b"\xff\xfe", b"A%ED%A0%80"])
def test_invalid_utf8_accession_is_refused_naming_it(shim, value):
    status, r = get(
        shim.port, QRURL.encode() + b"?accessNumber=" + value + b"&modality=CT" + H)
    assert (status, r["code"], r["data"]) == (200, 202, None), r
    assert "accessNumber" in r["message"] and "UTF-8" in r["message"]


def test_valid_utf8_accessions_get_distinct_urls(shim):
    a = get(shim.port, QRURL.encode() + b"?accessNumber=%E5%BC%A0&modality=CT" + H)[1]
    b = get(shim.port, QRURL.encode() + b"?accessNumber=%E5%BC%A1&modality=CT" + H)[1]
    raw = get(shim.port, QRURL.encode() + "?accessNumber=张&modality=CT".encode()
              + H)[1]
    assert a["code"] == b["code"] == raw["code"] == 200
    assert a["data"] != b["data"] and raw["data"] == a["data"]


def test_invalid_utf8_in_login_and_form_bodies(shim):
    status, r = get(shim.port, b"/hrball/?hisUserId=%FF&type=2")
    assert r["code"] == 202 and "hisUserId" in r["message"], r
    status, r = shim.post_signed(DELETE, {"patientName": "x"}, form=True)
    assert r["code"] == 202  # the form path itself works; now bad bytes in it:
    body = b"patientName=%FF&accessionNo=A1&operateDoctorName=d&operateDateTime=2024-01-01"
    status, r = shim.raw("POST", LOOKUP, body,
                         {"Content-Type": "application/x-www-form-urlencoded"})
    assert r["code"] == 202 and "patientName" in r["message"] and "UTF-8" in r["message"]
    status, r = shim.raw("POST", LOOKUP, b'{"hisUserId": "\xff"}',
                         {"Content-Type": "application/json"})
    assert r["code"] == 202 and "UTF-8" in r["message"], r


@pytest.mark.parametrize("depth", [17, 30_000])
def test_deeply_nested_json_is_202(shim, depth):
    body = b'{"hisUserId": ' + b"[" * depth + b"]" * depth + b"}"
    status, r = shim.raw("POST", LOOKUP, body, {"Content-Type": "application/json"})
    assert (status, r["code"]) == (200, 202), r
    assert "nests more than 16 levels" in r["message"]
    assert shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["code"] == 200


def test_nesting_inside_strings_is_not_depth(shim):
    body = json.dumps({"hisUserId": "[" * 50, "idCardNo": "{" * 50}).encode()
    status, r = shim.raw("POST", LOOKUP, body, {"Content-Type": "application/json"})
    assert r["code"] == 202 and "nests" not in r["message"] and "idCardNo" not in r["message"]


def test_too_many_fields_is_202(shim):
    body = json.dumps({f"k{i}": i for i in range(500)}).encode()
    status, r = shim.raw("POST", LOOKUP, body, {"Content-Type": "application/json"})
    assert r["code"] == 202 and "at most 200" in r["message"]


def test_body_over_the_limit_is_413_with_code_202(shim):
    big = b"{" + b" " * (70 * 1024) + b"}"
    status, r = shim.raw("POST", DELETE, big, {"Content-Type": "application/json"})
    assert (status, r["code"]) == (413, 202) and "max_body" in r["message"]
    head = (f"POST {DELETE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"8000\r\n" + b" " * 0x8000 + b"\r\n"
    status, r = send_raw(shim.port, head + chunk * 3 + b"0\r\n\r\n")
    assert (status, r["code"]) == (413, 202), r


def test_refusals_of_the_http_layer_are_json(shim):
    status, r = send_raw(shim.port, b"NONSENSE\r\n\r\n")
    assert status == 400 and r["code"] == 400 and "malformed" in r["message"]
    status, r = send_raw(shim.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000
                         + b"\r\n\r\n")
    assert status == 431 and r["code"] == 431
    status, r = send_raw(shim.port, f"POST {DELETE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    "Content-Length: abc\r\n\r\n".encode())
    assert status == 400 and r["code"] == 400
    status, r = send_raw(shim.port, f"GET {QRURL} HTTP/1.1\r\nContent-Length: 1\r\n"
                                    "Content-Length: 2\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status == 400 and r["code"] == 400
    assert shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["code"] == 200


def test_http_forms_old_clients_use(shim):
    """HEAD, HTTP/1.0, pipelined requests and Expect: 100-continue all answered."""
    q = (QRURL + "?accessNumber=A1&modality=CT").encode() + H

    def exchange(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", shim.port), timeout=10) as s:
            s.sendall(data)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out

    head = exchange(b"HEAD " + q + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    old = exchange(b"GET " + q + b" HTTP/1.0\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 200") and old.endswith(b"}")
    two = exchange(b"GET " + q + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET " + q +
                   b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2
    cont = exchange(b"POST /hrball/ HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 18\r\nConnection: close\r\n\r\nhisUserId=u&type=2")
    assert cont.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert b'"code": 200' in cont
