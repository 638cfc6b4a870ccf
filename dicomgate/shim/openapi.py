"""The OpenAPI 3.0 document served at /openapi.json (what PACS vendors integrate against).

Parameters and bodies come from the endpoints' declared schemas (schema.py), the same models
that parse the requests."""

from __future__ import annotations

from typing import Any

from .. import __version__
from . import deletion, login, lookup, qr_endpoint
from .schema import json_schema, query_parameters


def _param(name: str, desc: str, required: bool = True, where: str = "query") -> dict:
    return {"name": name, "in": where, "required": required, "description": desc,
            "schema": {"type": "string"}}


_ANSWER = {
    "type": "object", "required": ["code", "message", "data"],
    "properties": {
        "code": {"type": "integer", "enum": [200, 202, 400, 403, 404, 408, 431, 500, 503, 505],
                 "description": "200 success; 202 missing or invalid parameters (the message "
                                "names each), a body over shim.max_body, or the external "
                                "lookup busy; 500 internal error; otherwise the HTTP status "
                                "of a refusal by the HTTP front"},
        "message": {"type": "string", "example": "请求成功"},
        "data": {"description": "see each operation"},
    },
}
_REF = {"$ref": "#/components/schemas/Answer"}


def _json(description: str, code: int, message: str) -> dict:
    """One documented answer: the spec's {code, message, data} with an example."""
    return {"description": description, "content": {"application/json": {
        "schema": _REF, "example": {"code": code, "message": message, "data": None}}}}


# What the HTTP front (front.py, pools.py, refusals.py) answers before or instead of a route.
_REFUSALS = {
    "400": _json("malformed HTTP request, e.g. a folded header line (the connection is "
                 "closed)", 400, "malformed HTTP request: ..."),
    "403": _json("caller not in shim.allow (refused at accept, connection closed), or a Host "
                 "or Origin that does not name this gateway (shim.host_names)", 403,
                 "caller 10.0.0.9 is not in shim.allow"),
    "408": _json("request head and body not received within shim.request_timeout", 408,
                 "request head and body not received within 10s (shim.request_timeout)"),
    "413": _json("request body over shim.max_body: HTTP 413 with the spec's code 202 "
                 "(invalid parameters)", 202,
                 "传参数不规范: request body over the limit of 65536 bytes (shim.max_body)"),
    "431": _json("request head over 64 KiB", 431, "request head over 64 KiB"),
    "505": _json("request line other than HTTP/1.1 or HTTP/1.0", 505,
                 "malformed HTTP request: HTTP/3.0 is not served (HTTP/1.1 or HTTP/1.0)"),
    "500": _json("internal error (no details leaked; see the gateway log)", 500,
                 "内部服务错误 internal error (request ...; see the gateway log)"),
}
_BUSY_503 = _json("busy: too many open connections (shim.max_connections, "
                  "shim.max_connections_per_source), too many requests from the caller's "
                  "address (shim.rate, shim.burst; after waiting up to 2 s), or "
                  "every worker of the endpoint's pool busy and its queue full "
                  "(shim.threads, shim.queue); try again in a moment", 503,
                  "busy: 24 requests in progress (shim.threads, shim.queue); try again in a "
                  "moment")
_LOOKUP_BUSY = {"summary": "external lookups busy (HTTP 200, code 202 so the plugin shows the "
                           "reason)",
                "value": {"code": 202, "data": None,
                          "message": "busy: 4 external lookups already running and 8 waiting "
                                     "(shim.lookup_threads, shim.lookup_queue); try again in "
                                     "a few seconds"}}


def front_responses(open_access: bool = False) -> dict[str, Any]:
    """The HTTP front's answers for any route (no 403 for a route open to every caller)."""
    refusals = {k: v for k, v in _REFUSALS.items() if not (open_access and k == "403")}
    return {**refusals, "503": _BUSY_503}


def _responses(data_desc: str, lookup: bool = False) -> dict:
    ok_desc = f"code 200 ({data_desc}) or 202 (message names the parameters)"
    if lookup:
        ok_desc += "; 202 \"busy\" when shim.lookup_threads and shim.lookup_queue are full"
    ok: dict[str, Any] = {"description": ok_desc, "content": {"application/json": {
        "schema": _REF}}}
    if lookup:
        ok["content"]["application/json"]["examples"] = {"busy": _LOOKUP_BUSY}
    return {"200": ok, **front_responses()}


def _qr(summary: str, data_desc: str, schema: type) -> dict:
    return {"get": {"summary": summary, "parameters": query_parameters(schema),
                    "responses": _responses(data_desc)}}


def build(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    lookup_summary = ("外院检查提醒: the patient's exams at other hospitals (provincial and "
                      "national platforms, QIDO-RS)")
    lookup_answers = _responses("data: {count, exams: [{hospital, studyDate, modality, "
                                "bodyPart, description, studyInstanceUid, source}], sources}",
                                lookup=True)
    body = json_schema(lookup.LookupQuery)
    paths: dict[str, Any] = {
        qr_endpoint.QR_URL_PATH: _qr(
            "二维码 URL: the cloud-film link with its SM4-ECB token", "data: the URL",
            qr_endpoint.QrQuery),
        qr_endpoint.QR_CODE_PATH: _qr(
            "二维码图片: the QR code of that link as base64 PNG", "data: base64 PNG",
            qr_endpoint.QrCodeQuery),
        login.PATH: {"get": {"summary": "医生登录同步 (doctor login/logout sync); values "
                                        "$-encoded UTF-8 (encodeURI with % replaced by $)",
                             "parameters": query_parameters(login.LoginQuery),
                             "responses": _responses("data: {hisUserId, sessionId}")}},
        lookup.PATH: {
            "get": {"summary": lookup_summary, "parameters": query_parameters(
                lookup.LookupQuery), "responses": lookup_answers},
            "post": {"summary": lookup_summary + "; the fields as a JSON object or form body",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": body},
                         "application/x-www-form-urlencoded": {"schema": body}}},
                     "responses": lookup_answers}},
        deletion.PATH: {"post": {
            "summary": "图像删除更新: remove local copies, delete upstream, re-sync the exam",
            "parameters": [
                _param("X-Dicomgate-Timestamp", "unix seconds (when shim.delete_secret is set)",
                       False, "header"),
                _param("X-Dicomgate-Signature", "hex HMAC-SHA256(delete_secret, timestamp "
                       "'\\n' METHOD '\\n' path '\\n' canonical query '\\n' body) (when "
                       "shim.delete_secret is set; docs/operations.md)", False, "header")],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": json_schema(deletion.DeleteBody)},
                "application/x-www-form-urlencoded": {
                    "schema": json_schema(deletion.DeleteBody)}}},
            "responses": _responses("data: {deletionId, studies, instances, filesRemoved, "
                                    "repeat}")}},
    }
    paths.update(extra_paths or {})
    return {
        "openapi": "3.0.3",
        "info": {"title": "dicomgate HTTP shim (医保影像云前置机)", "version": __version__,
                 "description": "Endpoints the hospital PACS calls (interface spec 4.3-4.5). "
                                "Answers are UTF-8 JSON {code, message, data}."},
        "paths": paths,
        "components": {"schemas": {"Answer": _ANSWER}},
    }
