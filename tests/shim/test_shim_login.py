"""Doctor login sync (spec 4.4.3.1): `$XX` encoding, SM2 interop, sessions, audit."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shim_fixtures import GROUP_HOSPITAL, HOSPITAL, SM2_KEY
from shim_sm2_reference import encrypt, id_check_digit, public_key

from dicomgate.shim.login_string import dollar_decode, dollar_encode, parse_login_string
from dicomgate.smcrypto import to_der
from tests.support import run_cli

PUB = public_key(int(SM2_KEY, 16))
DOCTOR_ID = "11010519491231002X"  # the GB 11643 standard's own example


def encode_uri(s: str) -> str:
    """JavaScript encodeURI: reserved and unreserved characters stay as they are."""
    return quote(s, safe=";,/?:@&=+$-_.!~*'()#")


# --- the $ encoding --------------------------------------------------------------------

def test_spec_example():
    assert dollar_encode("张医生") == "$E5$BC$A0$E5$8C$BB$E7$94$9F"
    assert dollar_decode("$E5$BC$A0$E5$8C$BB$E7$94$9F") == "张医生"
    wyht = "WYHT://hisUserId=1001&type=1&doctorName=$E5$BC$A0$E5$8C$BB$E7$94$9F"
    params = parse_login_string(wyht)
    assert params["hisUserId"] == "1001" and params["type"] == "1"
    assert dollar_decode(params["doctorName"]) == "张医生"


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_dollar_round_trip(s):
    assert dollar_decode(dollar_encode(s)) == s


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="$%&="),
               max_size=40))
def test_encode_uri_then_dollar_round_trip(s):
    """What a PACS really does: encodeURI, then every % -> $."""
    assert dollar_decode(encode_uri(s).replace("%", "$")) == s


@given(st.dictionaries(st.sampled_from(["hisUserId", "doctorName", "department", "doctorCode"]),
                       st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")),
                               min_size=1, max_size=20), min_size=1))
def test_login_string_round_trip(values):
    text = "&".join(f"{k}={dollar_encode(v)}" for k, v in values.items())
    for form in (text, f"WYHT://{text}", f'"C:/IU/plugin.exe" "{text}"',
                 f"http://10.0.0.1:8080/hrball/?{text}"):
        parsed = parse_login_string(form)
        assert {k: dollar_decode(v) for k, v in parsed.items()} == values


def test_spec_template_quirks():
    text = ('"D:/IU/XXX.exe" "hisUserId=u1&type=1 &doctorName=$E5$BC$A0&department=CT& '
            'doctorSex=1&doctorIdCardNo=AB==&doctorCode=D1&\ndoctorType=1&hospitalId=H1'
            '&{phoneNumber}=phoneNumber"')
    p = parse_login_string(text)
    assert p["type"] == "1" and p["doctorSex"] == "1" and p["doctorType"] == "1"
    assert p["doctorIdCardNo"] == "AB==" and p["phoneNumber"] == ""
    assert parse_login_string("hisUserId=u&13800138000=phoneNumber")["phoneNumber"] == \
        "13800138000"


# --- over HTTP ---------------------------------------------------------------------------

def login_query(cipher: str, **over: str) -> str:
    fields = {"hisUserId": "doc01", "type": "1", "doctorName": dollar_encode("张医生"),
              "hospitalId": HOSPITAL, "department": dollar_encode("放射科"),
              "departmentCode": "FSK", "doctorSex": "1", "doctorType": "1",
              "doctorCode": "D110105000001", "doctorIdCardNo": cipher,
              "phoneNumber": "13800138000"} | over
    return "&".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def bc_hex(msg: bytes = DOCTOR_ID.encode(), order: str = "C1C3C2") -> str:
    return encrypt(PUB, msg, order).hex().upper()


def test_login_with_bouncycastle_style_ciphertext(shim):
    status, r = shim.raw("GET", "/hrball/?" + login_query(bc_hex()))
    assert (status, r["code"]) == (200, 200), r
    assert r["data"]["hisUserId"] == "doc01"
    store = shim.store()
    session = store.sessions.active(HOSPITAL, "doc01")
    assert session["id"] == r["data"]["sessionId"]
    assert session["detail"]["doctorName"] == "张医生"
    assert session["detail"]["department"] == "放射科"
    assert DOCTOR_ID not in json.dumps(session) and len(session["id_hash"]) == 64
    audit = store.audit.list("doctor.login", limit=1)[0]
    assert audit["actor"] == "doc01" and "张医生" not in json.dumps(audit, ensure_ascii=False)
    store.close()


@pytest.mark.parametrize("form", ["b64-no04", "hex-lower-no04", "der", "c1c2c3-b64"])
def test_login_ciphertext_spellings(shim, form):
    raw = encrypt(PUB, DOCTOR_ID.encode(), "C1C2C3" if form.startswith("c1c2c3") else "C1C3C2")
    if form == "b64-no04":
        cipher = quote(base64.b64encode(raw[1:]).decode(), safe="")
    elif form == "hex-lower-no04":
        cipher = raw[1:].hex()
    elif form == "der":
        cipher = to_der(raw[1:65].hex(), raw[65:97], raw[97:]).hex()
    else:
        cipher = base64.b64encode(raw).decode()  # raw + / = as encodeURI leaves them
    status, r = shim.raw("GET", "/hrball/?" + login_query(cipher, hisUserId=f"u-{form}"))
    assert r["code"] == 200, r


def test_login_then_logout_closes_session(shim):
    shim.raw("GET", "/hrball/?" + login_query(bc_hex(), hisUserId="doc02"))
    store = shim.store()
    assert store.sessions.active(HOSPITAL, "doc02") is not None
    status, r = shim.raw("GET", "/hrball?hisUserId=doc02&type=2")
    assert r["code"] == 200 and r["data"]["closed"] == 1
    assert store.sessions.active(HOSPITAL, "doc02") is None
    status, r = shim.raw("GET", "/hrball/?hisUserId=doc02&type=2")  # again: harmless
    assert r["code"] == 200 and r["data"]["closed"] == 0
    assert [a["action"] for a in store.audit.list(limit=3)][:2] == ["doctor.logout"] * 2
    store.close()


def test_hospitalld_spelling(shim):
    q = login_query(bc_hex(), hospitalId=None, hisUserId="doc03") + f"&hospitalld={GROUP_HOSPITAL}"
    assert shim.raw("GET", "/hrball/?" + q)[1]["code"] == 200
    store = shim.store()
    assert store.sessions.active(GROUP_HOSPITAL, "doc03") is not None
    store.close()


def corrupt(hex_ct: str, at: int) -> str:
    b = bytearray(bytes.fromhex(hex_ct))
    b[at] ^= 0x01
    return b.hex()


@pytest.mark.parametrize("cipher,reason", [
    (corrupt(bc_hex(), -1), "integrity check"),  # C2 flipped
    (corrupt(bc_hex(), 70), "integrity check"),  # C3 flipped
    (corrupt(bc_hex(), 5), "not a point"),  # C1 off the curve
    ("04" + "11" * 40, "too short"),
    ("not-a-ciphertext!", "neither hex nor base64"),
    (encrypt(public_key(12345), DOCTOR_ID.encode()).hex(), "integrity check"),  # other key
    (bc_hex(b"110105194912310021"), "check digit"),
    (bc_hex(b"\xff\xfe"), "non-text"),
])
def test_bad_ciphertext_is_202_not_500(shim, cipher, reason):
    status, r = shim.raw("GET", "/hrball/?" + login_query(cipher, hisUserId="bad"))
    assert (status, r["code"]) == (200, 202), r
    assert "doctorIdCardNo" in r["message"] and reason in r["message"]


@pytest.mark.parametrize("over,named", [
    ({"hisUserId": None}, "hisUserId"), ({"type": "3"}, "type"),
    ({"doctorSex": "5"}, "doctorSex"), ({"doctorType": None}, "doctorType"),
    ({"doctorName": "$E5$BC"}, "doctorName"),  # truncated UTF-8
    ({"doctorIdCardNo": None}, "doctorIdCardNo"),
])
def test_login_bad_parameters_named(shim, over, named):
    status, r = shim.raw("GET", "/hrball/?" + login_query(bc_hex(), **over))
    assert r["code"] == 202 and named in r["message"], r


def test_id_check_digit_reference():
    # the reference check digit used to build the test ciphertexts agrees with the standard
    assert id_check_digit(DOCTOR_ID[:17]) == DOCTOR_ID[17]


def test_cli_login_parse(shim):
    text = "WYHT://" + login_query(bc_hex(), hisUserId="cli1")
    out = run_cli("login", "parse", "--json", text, config=shim.config, timeout=30)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["doctorIdCardNo"] == "110105********002X" and data["doctorName"] == "张**"
    assert data["department"] == "放射科" and data["sm2Mode"] == "C1C3C2"
    out = run_cli("login", "parse", "--json", "--reveal", text, config=shim.config, timeout=30)
    assert json.loads(out.stdout)["doctorIdCardNo"] == DOCTOR_ID
    bad = run_cli("login", "parse", "hisUserId=x&type=1", config=shim.config, timeout=30)
    assert bad.returncode == 1 and "doctorIdCardNo missing" in bad.stdout
