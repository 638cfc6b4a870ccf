"""The boundary is the declared schema: the signature covers the whole request, each field
comes from one place, a value's type and size are checked before anything uses it."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time

import pytest
from shim_fixtures import DELETE_SECRET, GROUP_HOSPITAL, HOSPITAL, sign
from test_shim_deletion import DELETE, body

LOOKUP = "/iuWorkStation/swipingIdCardNo"


def deletions(shim) -> list:
    store = shim.store()
    try:
        return store.deletions.list(limit=1000)
    finally:
        store.close()


def signed_raw(shim, path_and_query: str, raw: bytes, signed_query: str | None = None,
               ts: str | None = None) -> tuple[int, dict]:
    """POST `raw` to `path_and_query`, signed over `signed_query` (default: the query sent)."""
    path, _, query = path_and_query.partition("?")
    ts = ts or str(int(time.time()))
    sig = sign(DELETE_SECRET, ts, "POST", path, query if signed_query is None else signed_query,
               raw)
    return shim.raw("POST", path_and_query, raw, {"Content-Type": "application/json",
                                                  "X-Dicomgate-Timestamp": ts,
                                                  "X-Dicomgate-Signature": sig})


def test_query_added_to_a_signed_body_is_refused(shim):
    """A captured body signed without hospitalId (a body-only HMAC), replayed to
    D?hospitalId=<group hospital>: the signature must not match; nothing is recorded."""
    raw = json.dumps({k: v for k, v in body("SMUGGLE-1").items() if k != "hospitalId"}).encode()
    ts = str(int(time.time()))
    body_only = hmac.new(DELETE_SECRET.encode(), ts.encode() + b"\n" + raw,
                         hashlib.sha256).hexdigest()
    before = len(deletions(shim))
    status, r = shim.raw("POST", f"{DELETE}?hospitalId={GROUP_HOSPITAL}", raw,
                         {"Content-Type": "application/json", "X-Dicomgate-Timestamp": ts,
                          "X-Dicomgate-Signature": body_only})
    assert (status, r["code"]) == (403, 403) and "does not match" in r["message"], r
    assert len(deletions(shim)) == before
    # the same request signed over the whole of it reaches the schema, which names the field
    status, r = signed_raw(shim, f"{DELETE}?hospitalId={GROUP_HOSPITAL}", raw)
    assert r["code"] == 202 and "hospitalId not accepted in the query string" in r["message"]


def test_deletion_fields_come_from_the_body_only(shim):
    """Even signed (query included), a field in the query string is refused, naming it."""
    raw = json.dumps({k: v for k, v in body("SMUGGLE-2").items() if k != "hospitalId"}).encode()
    before = len(deletions(shim))
    status, r = signed_raw(shim, f"{DELETE}?hospitalId={GROUP_HOSPITAL}", raw)
    assert (status, r["code"]) == (200, 202), r
    assert "hospitalId not accepted in the query string" in r["message"]
    assert len(deletions(shim)) == before


def test_signature_covers_method_and_path(shim):
    raw = json.dumps(body("SIG-PATH")).encode()
    ts = str(int(time.time()))
    sig = sign(DELETE_SECRET, ts, "POST", "/other/path", "", raw)
    status, r = shim.raw("POST", DELETE, raw, {"Content-Type": "application/json",
                                               "X-Dicomgate-Timestamp": ts,
                                               "X-Dicomgate-Signature": sig})
    assert status == 403 and "does not match" in r["message"], r


def test_field_given_twice_is_refused(shim):
    raw = json.dumps(body("TWICE-1") | {"hospitalld": GROUP_HOSPITAL}).encode()
    status, r = signed_raw(shim, DELETE, raw)
    assert r["code"] == 202 and "hospitalId given 2 times" in r["message"], r


@pytest.mark.parametrize("value", ['["A", "X"]', "true", "NaN", "1e999999", "9" * 5000,
                                   "12345", '{"a": 1}'])
def test_deletion_accession_must_be_a_string(shim, value):
    text = json.dumps(body("X")).replace('"accessionNo": "X"', f'"accessionNo": {value}')
    before = len(deletions(shim))
    status, r = signed_raw(shim, DELETE, text.encode())
    assert (status, r["code"], r["data"]) == (200, 202, None), r
    assert "accessionNo invalid: expected a string" in r["message"]
    assert len(deletions(shim)) == before


@pytest.mark.parametrize("field,value,problem", [
    ("accessionNo", "A" * 65, "accessionNo too long: 65 characters"),
    ("patientName", "李\u0000四", "patientName contains characters not allowed"),
    ("operateDateTime", "2024-05-06 10:11:12" * 3, "operateDateTime too long"),
])
def test_deletion_size_and_charset_named(shim, field, value, problem):
    status, r = signed_raw(shim, DELETE, json.dumps(body("SIZE-1") | {field: value}).encode())
    assert r["code"] == 202 and problem in r["message"], r


def test_lookup_huge_number_is_202_not_500(shim):
    raw = b'{"hisUserId": ' + b"9" * 5000 + b', "idCardNo": "11010519491231002X"}'
    status, r = shim.raw("POST", LOOKUP, raw, {"Content-Type": "application/json"})
    assert (status, r["code"]) == (200, 202), r
    assert "hisUserId invalid: expected a string" in r["message"]


def test_lookup_field_in_query_and_body_is_refused(shim):
    raw = json.dumps({"hisUserId": "u1", "idCardNo": "11010519491231002X"}).encode()
    status, r = shim.raw("POST", LOOKUP + "?hisUserId=u2", raw,
                         {"Content-Type": "application/json"})
    assert r["code"] == 202 and "hisUserId given 2 times" in r["message"], r


@pytest.mark.parametrize("ts", [b"9" * 5000, "¹²³".encode("latin-1"), b"12e3", b"-5"])
def test_odd_timestamps_are_403_not_500(shim, ts):
    raw = json.dumps(body("TS-1")).encode()
    head = (f"POST {DELETE} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            "X-Dicomgate-Signature: 00\r\nX-Dicomgate-Timestamp: ").encode()
    with socket.create_connection(("127.0.0.1", shim.port), timeout=10) as s:
        s.sendall(head + ts + b"\r\n\r\n" + raw)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    head_out, _, answer = got.partition(b"\r\n\r\n")
    assert head_out.startswith(b"HTTP/1.1 403"), got[:200]
    assert "X-Dicomgate-Timestamp" in json.loads(answer)["message"]


def test_qr_without_hospital_id_is_202(shim):
    for path in ("/getway/reportAndFilm/api/qrurl", "/getway/reportAndFilm/api/qrcode"):
        r = shim.get(path, accessNumber="A1", modality="CT")
        assert (r["code"], r["data"]) == (202, None), r
        assert "hospitalId missing" in r["message"]
    r = shim.get("/getway/reportAndFilm/api/qrurl", accessNumber="A1", modality="CT",
                 hospitalld=HOSPITAL)  # the spec's own spelling still works
    assert r["code"] == 200, r
