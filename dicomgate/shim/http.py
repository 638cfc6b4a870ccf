"""The WSGI application: route table, CIDR allow-list, body limits, JSON answers, request log.

Answers follow the spec: `{"code": 200|202|500, "message": ..., "data": ...}`. Code 202
(missing or invalid parameters) is sent with HTTP 200 so PACS clients that treat any other
HTTP status as a transport error still read the message; code 500 goes with HTTP 500.
Other code registers more routes on the same port through `RouteTable.add` (e.g. /healthz),
or a whole WSGI application under a path prefix through `mounts` (the operator console): it
is called through `mount.call_mounted` from the parts of the request, whatever server
received it.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import structlog

from ..config.model import Network
from ..metrics import HTTP_REQUESTS
from .mount import call_mounted, mount_of
from .params import ParamError

log = structlog.get_logger("dicomgate.shim")

OK, BAD_PARAMS, INTERNAL = 200, 202, 500
MESSAGES = {OK: "请求成功", BAD_PARAMS: "传参数不规范", INTERNAL: "内部服务错误"}
_REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error"}


@dataclass
class Request:
    method: str
    path: str
    query_string: str  # raw, undecoded: the login string's `$XX` must reach its parser as sent
    headers: dict[str, str]
    body: bytes
    client: str
    request_id: str
    context: dict[str, Any] = field(default_factory=dict)  # safe extras for the request log

    def query(self) -> dict[str, str]:
        """Decoded query parameters (first value wins; `+` kept as `+`, base64 survives)."""
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.query_string.replace("+", "%2B"), keep_blank_values=True):
            out.setdefault(k.strip(), v)
        return out

    def params(self) -> dict[str, str]:
        """Query parameters, overlaid with a JSON object or form body (POST)."""
        out = self.query()
        if not self.body:
            return out
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        text = self.body.decode("utf-8")
        if ctype == "application/json" or (not ctype and text.lstrip().startswith("{")):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise BadBody("the JSON body must be an object of parameters")
            out.update({str(k): "" if v is None else str(v) for k, v in data.items()})
        else:
            out.update(dict(parse_qsl(text, keep_blank_values=True)))
        return out


class BadBody(ValueError):
    pass


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    code: int | None = None  # the spec's `code`, for the request log
    headers: tuple[tuple[str, str], ...] = ()  # more headers (a mounted app's CSP, Location)
    quiet: bool = False  # logged at debug: a console page's poll every few seconds


def reply(code: int, message: str | None = None, data: Any = None,
          status: int | None = None) -> Response:
    body = {"code": code, "message": message or MESSAGES.get(code, ""), "data": data}
    http = status if status is not None else (500 if code == INTERNAL else
                                              code if code in _REASONS and code >= 400 else 200)
    return Response(http, json.dumps(body, ensure_ascii=False).encode("utf-8"), code=code)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    path: str
    handler: Handler
    methods: tuple[str, ...]
    open_access: bool  # True: skips the CIDR allow-list (e.g. a health check for monitoring)
    summary: str = ""


class RouteTable:
    """Exact-path routes ("/hrball" and "/hrball/" are the same route)."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",), *,
            open_access: bool = False, summary: str = "") -> None:
        key = _norm(path)
        if key in self._routes:
            raise ValueError(f"route {path} is already registered")
        self._routes[key] = Route(path, handler, tuple(m.upper() for m in methods),
                                  open_access, summary)

    def find(self, path: str) -> Route | None:
        return self._routes.get(_norm(path))

    def all(self) -> list[Route]:
        return list(self._routes.values())


def _norm(path: str) -> str:
    return "/" + path.strip("/")


class ShimApp:
    """The WSGI callable."""

    def __init__(self, routes: RouteTable, allow: tuple[Network, ...], max_body: int,
                 mounts: dict[str, Callable] | None = None):
        self.routes = routes
        self.allow = allow
        self.max_body = max_body
        self.mounts = mounts if mounts is not None else {}  # prefix -> WSGI app

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        t0 = time.perf_counter()
        req_id = uuid.uuid4().hex[:12]
        client = environ.get("REMOTE_ADDR", "")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "/")
        req: Request | None = None
        try:
            resp, req = self._dispatch(environ, method, path, client, req_id)
        except Exception as exc:  # never a stack trace to the caller
            log.exception("shim.internal_error", path=path, request_id=req_id,
                          error_type=type(exc).__name__)
            resp = reply(INTERNAL, f"内部服务错误 internal error (request {req_id}; "
                                   "see the gateway log)")
        start_response(f"{resp.status} {_REASONS.get(resp.status, 'OK')}", [
            ("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))),
            ("X-Request-Id", req_id), ("Cache-Control", "no-store"), *resp.headers])
        route = self.routes.find(path)
        endpoint = route.path if route else mount_of(self.mounts, path) or "other"
        HTTP_REQUESTS.labels(endpoint, str(resp.code or resp.status)).inc()
        (log.debug if resp.quiet else log.info)(
            "shim.request", method=method, path=path, client=client, status=resp.status,
            code=resp.code, ms=round((time.perf_counter() - t0) * 1000, 2),
            request_id=req_id, **(req.context if req else {}))
        return [resp.body] if method != "HEAD" else [b""]

    def _dispatch(self, environ: dict, method: str, path: str, client: str,
                  req_id: str) -> tuple[Response, Request | None]:
        prefix = mount_of(self.mounts, path)
        if prefix is not None:  # a mounted application (the console), same allow-list
            if not self._allowed(client):
                log.warning("shim.denied", client=client, path=path)
                return reply(403, f"caller {client} is not in shim.allow"), None
            body, too_big = _read_body(environ, self.max_body)
            if too_big:
                return reply(413, f"request body over the limit of {self.max_body} bytes "
                                  "(shim.max_body)"), None
            return call_mounted(self.mounts[prefix], prefix, method, path,
                                environ.get("QUERY_STRING", ""), _headers(environ), body,
                                client, req_id), None
        route = self.routes.find(path)
        if route is None:
            return reply(404, f"no such endpoint {path} (see /openapi.json)"), None
        if not route.open_access and not self._allowed(client):
            log.warning("shim.denied", client=client, path=path)
            return reply(403, f"caller {client} is not in shim.allow"), None
        if method not in route.methods and not (method == "HEAD" and "GET" in route.methods):
            return reply(405, f"{method} not allowed on {route.path} "
                              f"(use {', '.join(route.methods)})"), None
        body, too_big = _read_body(environ, self.max_body)
        if too_big:
            return reply(413, f"request body over the limit of {self.max_body} bytes "
                              "(shim.max_body)"), None
        req = Request(method, path, environ.get("QUERY_STRING", ""), _headers(environ), body,
                      client, req_id)
        try:
            return route.handler(req), req
        except ParamError as exc:
            req.context["invalid"] = [p.split(" ", 1)[0] for p in exc.problems]
            return reply(BAD_PARAMS, f"{MESSAGES[BAD_PARAMS]}: {exc}"), req
        except (BadBody, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return reply(BAD_PARAMS, f"request body unreadable: {exc} (expected UTF-8 JSON "
                                     "object or form fields)"), req

    def _allowed(self, client: str) -> bool:
        try:
            addr = ipaddress.ip_address(client.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow)


def _headers(environ: dict) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
               if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def _read_body(environ: dict, limit: int) -> tuple[bytes, bool]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return b"", True
    if length <= 0:
        return b"", False
    return environ["wsgi.input"].read(length), False
