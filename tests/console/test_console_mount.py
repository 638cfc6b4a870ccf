"""The mount adapter the shim calls for /console, whatever server received the request:
a request's parts in, the WSGI app's answer out as a shim Response."""

from __future__ import annotations

import json

from dicomgate.shim.mount import call_mounted, mount_of


def echo_app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                                               "REMOTE_ADDR", "HTTP_X_CONSOLE",
                                               "CONTENT_TYPE", "HTTP_X_REQUEST_ID")}
                      | {"body": environ["wsgi.input"].read().decode()}).encode()
    start_response("201 Created", [("Content-Type", "application/json"),
                                   ("Content-Length", str(len(body))), ("X-Extra", "1")])
    return [body]


def test_mount_of_matches_the_prefix_and_below_only():
    mounts = {"/console": echo_app}
    assert mount_of(mounts, "/console") == "/console"
    assert mount_of(mounts, "/console/api/x") == "/console"
    assert mount_of(mounts, "/consoles") is None and mount_of(mounts, "/healthz") is None


def test_call_mounted_passes_the_request_and_returns_status_headers_body():
    resp = call_mounted(echo_app, "/console", "POST", "/console/api/actions/x", "a=1",
                        {"x-console": "1", "content-type": "application/json"}, b'{"k":2}',
                        "127.0.0.1", "req123")
    got = json.loads(resp.body)
    assert resp.status == 201 and resp.content_type == "application/json"
    assert got == {"SCRIPT_NAME": "/console", "PATH_INFO": "/api/actions/x",
                   "QUERY_STRING": "a=1", "REMOTE_ADDR": "127.0.0.1", "HTTP_X_CONSOLE": "1",
                   "CONTENT_TYPE": "application/json", "HTTP_X_REQUEST_ID": "req123",
                   "body": '{"k":2}'}
    assert ("X-Extra", "1") in resp.headers and not resp.quiet  # a POST is logged at info
    get = call_mounted(echo_app, "/console", "GET", "/console", "", {}, b"", "::1", "r")
    assert json.loads(get.body)["PATH_INFO"] == "" and get.status == 201
