"""QR code endpoints (spec 4.3) over real HTTP: token, URL, PNG decoded back with zbar."""

from __future__ import annotations

import base64
import io
from urllib.parse import parse_qs, urlsplit

import pytest
from gmssl import sm4
from PIL import Image
from pyzbar.pyzbar import decode as zbar_decode
from shim_fixtures import FILM_URL, GROUP_HOSPITAL, HOSPITAL, SM4_KEY

from tests.support import run_cli

QRURL = "/getway/reportAndFilm/api/qrurl"
QRCODE = "/getway/reportAndFilm/api/qrcode"


def _sm4_decrypt(token: str) -> str:
    """Decrypt with gmssl directly, as the cloud side would (not through dicomgate.smcrypto)."""
    c = sm4.CryptSM4()
    c.set_key(bytes.fromhex(SM4_KEY), sm4.SM4_DECRYPT)
    return c.crypt_ecb(base64.b64decode(token)).decode("utf-8")


def _token(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == FILM_URL
    return parse_qs(parts.query)["info"][0]  # parse_qs undoes the percent-encoding


def test_qrurl_token_decrypts_to_the_exam(shim):
    r = shim.get(QRURL, accessNumber="CT2024/0001+A", modality="ct", hospitalId=GROUP_HOSPITAL)
    assert (r["http"], r["code"], r["message"]) == (200, 200, "请求成功")
    assert _sm4_decrypt(_token(r["data"])) == f"{GROUP_HOSPITAL}|CT2024/0001+A|CT"
    raw_query = urlsplit(r["data"]).query
    assert "+" not in raw_query and "/" not in raw_query  # percent-encoded


def test_qrurl_is_stable_and_differs_per_exam(shim):
    a = shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["data"]
    assert shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["data"] == a
    assert shim.get(QRURL, accessNumber="A2", modality="CT", hospitalId=HOSPITAL)["data"] != a
    assert _sm4_decrypt(_token(a)) == f"{HOSPITAL}|A1|CT"


@pytest.mark.parametrize("spelling", ["hospitalId", "hospitalld"])
def test_both_hospital_spellings(shim, spelling):
    r = shim.get(QRURL, accessNumber="A1", modality="MR", **{spelling: GROUP_HOSPITAL})
    assert _sm4_decrypt(_token(r["data"])) == f"{GROUP_HOSPITAL}|A1|MR"


def test_accession_no_alias(shim):
    r = shim.get(QRURL, accessionNo="A7", modality="DX", hospitalId=HOSPITAL)
    assert _sm4_decrypt(_token(r["data"])) == f"{HOSPITAL}|A7|DX"


@pytest.mark.parametrize("params,named", [
    ({"modality": "CT"}, ["accessNumber"]),
    ({"accessNumber": "A1"}, ["modality"]),
    ({}, ["accessNumber", "modality"]),
    ({"accessNumber": "A|1", "modality": "CT"}, ["accessNumber"]),
    ({"accessNumber": "A1", "modality": "C" * 40}, ["modality"]),
    ({"accessNumber": "A1", "modality": "CT"}, ["hospitalId missing"]),  # the spec: required
])
def test_qrurl_bad_parameters_named(shim, params, named):
    for path in (QRURL, QRCODE):
        r = shim.get(path, **params)
        assert (r["http"], r["code"], r["data"]) == (200, 202, None)
        for name in named:
            assert name in r["message"]


def test_qrcode_png_decodes_to_the_exact_url(shim):
    url = shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["data"]
    r = shim.get(QRCODE, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)
    assert r["code"] == 200
    img = Image.open(io.BytesIO(base64.b64decode(r["data"])))
    assert img.format == "PNG"
    found = zbar_decode(img)
    assert [f.data.decode() for f in found] == [url]
    assert img.width == img.height  # no caption asked for


def test_qrcode_caption_under_the_code(shim):
    url = shim.get(QRURL, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["data"]
    plain = Image.open(io.BytesIO(base64.b64decode(
        shim.get(QRCODE, accessNumber="A1", modality="CT", hospitalId=HOSPITAL)["data"]))
    ).convert("L")
    r = shim.get(QRCODE, accessNumber="A1", modality="CT", caption="1", hospitalId=HOSPITAL)
    assert (r["code"], r["message"]) == (200, "请求成功")  # the CJK font is installed here
    img = Image.open(io.BytesIO(base64.b64decode(r["data"]))).convert("L")
    assert [f.data.decode() for f in zbar_decode(img)] == [url]
    assert img.height > plain.height + 10
    band = img.crop((0, plain.height, img.width, img.height))
    dark = sum(band.histogram()[:128])
    assert dark > 100  # glyphs were drawn below the code


def test_cli_qr_decode_round_trip(shim):
    url = shim.get(QRURL, accessNumber="ACC-9", modality="US", hospitalId=GROUP_HOSPITAL)["data"]
    for arg in (url, _token(url), url.split("info=")[1]):
        out = run_cli("qr", "decode", "--json", arg, config=shim.config, timeout=30)
        assert out.returncode == 0, out.stderr
        assert '"accessionNo": "ACC-9"' in out.stdout
        assert f'"hospitalId": "{GROUP_HOSPITAL}"' in out.stdout
        assert '"modality": "US"' in out.stdout
    bad = run_cli("qr", "decode", "AAAA", config=shim.config, timeout=30)
    assert bad.returncode == 1 and "cannot be decrypted" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_unusable_font_still_gives_a_readable_code_without_caption(tmp_path):
    from dicomgate.shim.qr import FilmLinks

    not_a_font = tmp_path / "font.ttc"
    not_a_font.write_text("this is not a font")
    links = FilmLinks(FILM_URL, bytes.fromhex(SM4_KEY), not_a_font)
    url = FILM_URL + "?info=abc"
    png, captioned = links.png(url, True)
    assert captioned is False
    img = Image.open(io.BytesIO(png))
    assert [f.data.decode() for f in zbar_decode(img)] == [url]
    assert img.width == img.height
