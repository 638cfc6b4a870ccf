"""The server itself: CIDR allow-list, limits, errors, OpenAPI, route hook, log privacy."""

from __future__ import annotations

import ipaddress
import json

import requests
from shim_fixtures import free_port
from shim_sm2_reference import encrypt, public_key
from test_shim_login import DOCTOR_ID, SM2_KEY, login_query

from dicomgate.config.model import ShimConfig
from dicomgate.shim.http import Request, Response, RouteTable, reply
from dicomgate.shim.server import ShimService
from tests.support import run_cli, wait_until

QRURL = "/getway/reportAndFilm/api/qrurl?accessNumber=A1&modality=CT&hospitalId=H33010200001"


def test_caller_outside_allow_list_gets_403(shim):
    status, r = shim.raw("GET", QRURL, source="127.0.0.2")
    assert status == 403 and r["code"] == 403 and "127.0.0.2" in r["message"]
    status, r = shim.raw("GET", QRURL, source="127.0.0.1")
    assert status == 200 and r["code"] == 200


def test_unknown_path_and_body_limit(shim):
    status, r = shim.raw("GET", "/nope")
    assert status == 404 and "openapi.json" in r["message"]
    big = b"{" + b" " * (70 * 1024) + b"}"
    status, r = shim.raw("POST", "/getway/reportAndFilm/api/deleteImage", big,
                         {"Content-Type": "application/json"})
    assert status == 413 and "max_body" in r["message"]


def test_unreadable_body_is_202(shim):
    status, r = shim.raw("POST", "/iuWorkStation/swipingIdCardNo", b"[1, 2]",
                         {"Content-Type": "application/json"})
    assert (status, r["code"]) == (200, 202) and "JSON" in r["message"]


def test_openapi_lists_every_endpoint(shim):
    doc = requests.get(shim.base + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert {"/getway/reportAndFilm/api/qrurl", "/getway/reportAndFilm/api/qrcode", "/hrball/",
            "/iuWorkStation/swipingIdCardNo",
            "/getway/reportAndFilm/api/deleteImage"} <= set(doc["paths"])
    names = [p["name"] for p in doc["paths"]["/hrball/"]["get"]["parameters"]]
    assert "doctorIdCardNo" in names and "hospitalId" in names


def test_openapi_documents_the_http_fronts_refusals(shim):
    """Every answer the HTTP front gives (busy, deadline, limits, malformed, not allowed) is
    documented on every operation, in the spec's {code, message, data} shape."""
    doc = requests.get(shim.base + "/openapi.json", timeout=10).json()
    body_code = {"400": 400, "403": 403, "408": 408, "413": 202, "431": 431, "500": 500,
                 "503": 503}
    assert set(doc["components"]["schemas"]["Answer"]["properties"]["code"]["enum"]) >= {
        200, 202, 400, 403, 408, 431, 500, 503}
    spec_paths = {"/getway/reportAndFilm/api/qrurl", "/getway/reportAndFilm/api/qrcode",
                  "/hrball/", "/iuWorkStation/swipingIdCardNo",
                  "/getway/reportAndFilm/api/deleteImage"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            # routes open to every caller (e.g. a health check) cannot answer 403
            expected = set(body_code) - ({"403"} if path not in spec_paths else set())
            assert expected <= set(responses), (path, method)
            for status in expected:
                code = body_code[status]
                media = responses[status]["content"]["application/json"]
                assert media["schema"] == {"$ref": "#/components/schemas/Answer"}
                assert media["example"]["code"] == code, (path, method, status)
                assert set(media["example"]) == {"code", "message", "data"}
    busy = doc["paths"]["/iuWorkStation/swipingIdCardNo"]["get"]["responses"]["200"]
    example = busy["content"]["application/json"]["examples"]["busy"]["value"]
    assert example["code"] == 202 and example["message"].startswith("busy")
    # the documented 413 is what the server answers
    status, r = shim.raw("POST", "/getway/reportAndFilm/api/deleteImage",
                         b"{" + b" " * (70 * 1024) + b"}", {"Content-Type": "application/json"})
    assert (status, r["code"]) == (413, body_code["413"])


def test_route_hook_internal_error_and_open_access():
    """What a later feature does: add routes (e.g. /healthz open to monitoring hosts)."""
    routes = RouteTable()

    def boom(_req: Request) -> Response:
        raise RuntimeError("secret internals at /etc/dicomgate")

    routes.add("/boom", boom)
    routes.add("/healthz", lambda _r: reply(200, "ok"), open_access=True)
    port = free_port()
    svc = ShimService(ShimConfig(bind="127.0.0.1", port=port,
                                 allow=(ipaddress.ip_network("10.9.9.9/32"),)), routes)
    svc.start()
    try:
        assert svc.health() is None
        r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code == 200 and r.json()["message"] == "ok"
        r = requests.get(f"http://127.0.0.1:{port}/boom", timeout=5)
        assert r.status_code == 403  # not in the allow-list
        svc.stop()
        svc = ShimService(ShimConfig(bind="127.0.0.1", port=port), routes)
        svc.start()
        r = requests.get(f"http://127.0.0.1:{port}/boom", timeout=5)
        assert r.status_code == 500 and r.json()["code"] == 500
        assert "secret internals" not in r.text and "Traceback" not in r.text
        assert r.headers["X-Request-Id"] in r.json()["message"]
    finally:
        svc.stop()
    assert svc.health() is not None


def test_no_personal_data_in_logs(shim):
    def requests_logged() -> int:
        return shim.log.read_text(encoding="utf-8").count('"event": "shim.request"')

    before = requests_logged()
    cipher = encrypt(public_key(int(SM2_KEY, 16)), DOCTOR_ID.encode()).hex()
    assert shim.raw("GET", "/hrball/?" + login_query(cipher, hisUserId="priv"))[1]["code"] == 200
    shim.get("/iuWorkStation/swipingIdCardNo", hisUserId="priv",
             idCardNo="330102198001011234", patientName="赵六")
    shim.post_signed("/getway/reportAndFilm/api/deleteImage", {
        "patientName": "钱七", "accessionNo": "PRIV-1", "operateDoctorName": "孙八",
        "operateDateTime": "2024-01-01 00:00:00"})
    # The daemon logs each request after answering it: wait for the three lines.
    wait_until(lambda: requests_logged() >= before + 3, what="the requests' log lines")
    text = shim.log.read_text(encoding="utf-8")
    assert '"event": "shim.request"' in text and '"event": "doctor.login"' in text
    for secret in (DOCTOR_ID, "330102198001011234", "13800138000", "张医生", "赵六", "钱七",
                   "孙八", cipher[:40]):
        assert secret not in text, secret
    for line in text.splitlines():
        json.loads(line)  # one JSON object per line for journald


def test_status_shows_the_shim(shim):
    out = run_cli("status", "--json", config=shim.config, timeout=30)
    assert out.returncode == 0, out.stderr
    section = json.loads(out.stdout)["sections"]["shim"]
    assert section["deletion_signed"] is True and section["endpoints"]["lookup"] is True
