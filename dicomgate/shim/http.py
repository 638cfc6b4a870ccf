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

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import structlog

from ..config.model import Network
from ..metrics import HTTP_REQUESTS
from ..netaddr import client_ip
from .hosts import HostCheck
from .inputs import BadBody, body_text, decode_pairs, json_fields, pairs
from .mount import call_mounted, mount_of
from .params import ForeignHospital, ParamError
from .schema import Schema, read

log = structlog.get_logger("dicomgate.shim")

OK, BAD_PARAMS, INTERNAL = 200, 202, 500
MESSAGES = {OK: "请求成功", BAD_PARAMS: "传参数不规范", INTERNAL: "内部服务错误"}


def phrase(status: int) -> str | None:
    """The HTTP reason phrase of `status` (the standard library's table), None if unknown."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


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
        """Decoded query parameters (first value wins; `+` kept as `+`, base64 survives);
        ParamError names any parameter that is not UTF-8."""
        return decode_pairs(self.query_string, "query string")

    def fields(self, model: type[Schema]) -> tuple[dict[str, str], list[str]]:
        """The request read through its endpoint's declared schema (schema.read): query
        parameters and a JSON object or form body (POST), each field from one place; the
        valid fields and the problems."""
        return read(model, pairs(self.query_string, "query string"), self.body_fields())

    def body_fields(self) -> dict[str, Any] | list[tuple[str, str]] | None:
        if not self.body:
            return None
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        text = body_text(self.body)
        if ctype == "application/json" or (not ctype and text.lstrip().startswith("{")):
            return json_fields(text)
        return pairs(text, "form body", plus_is_space=True)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    code: int | None = None  # the spec's `code`, for the request log
    request_id: str | None = None  # sent as X-Request-Id; quoted in error messages
    headers: tuple[tuple[str, str], ...] = ()  # more headers (a mounted app's CSP, Location)
    quiet: bool = False  # logged at debug: a console page's poll every few seconds


def reply(code: int, message: str | None = None, data: Any = None,
          status: int | None = None) -> Response:
    body = {"code": code, "message": message or MESSAGES.get(code, ""), "data": data}
    http = status if status is not None else (500 if code == INTERNAL else
                                              code if code >= 400 and phrase(code) else 200)
    return Response(http, json.dumps(body, ensure_ascii=False).encode("utf-8"), code=code)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    path: str
    handler: Handler
    methods: tuple[str, ...]
    open_access: bool  # True: skips the CIDR allow-list (e.g. a health check for monitoring)
    summary: str = ""
    pool: str = "main"  # the worker pool that runs it ("lookup": slow peers, kept apart)
    cost: float = 1.0  # tokens of the caller's rate limit one request takes


class RouteTable:
    """Exact-path routes ("/hrball" and "/hrball/" are the same route)."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",), *,
            open_access: bool = False, summary: str = "", pool: str = "main",
            cost: float = 1.0) -> None:
        key = _norm(path)
        if key in self._routes:
            raise ValueError(f"route {path} is already registered")
        self._routes[key] = Route(path, handler, tuple(m.upper() for m in methods),
                                  open_access, summary, pool, cost)

    def find(self, path: str) -> Route | None:
        return self._routes.get(_norm(path))

    def all(self) -> list[Route]:
        return list(self._routes.values())

    def any_open(self) -> bool:
        return any(r.open_access for r in self._routes.values())


def _norm(path: str) -> str:
    return "/" + path.strip("/")


class ShimApp:
    """Routes one request to its handler and logs it; `__call__` is the WSGI form of it."""

    def __init__(self, routes: RouteTable, allow: tuple[Network, ...], max_body: int,
                 on_foreign: Callable[[Request, ForeignHospital], None] | None = None,
                 mounts: dict[str, Callable] | None = None, hosts: HostCheck | None = None,
                 bind: str = ""):
        self.routes = routes
        self.allow = allow
        self.max_body = max_body
        self.hosts = hosts if hosts is not None else HostCheck(())
        self.bind = bind  # the listener's address: ours, when a server does not say more
        self.on_foreign = on_foreign  # audits a request naming a hospital we do not serve
        self.mounts = mounts if mounts is not None else {}  # prefix -> WSGI app

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        body, too_big = _read_body(environ, self.max_body)
        resp, req_id = self.handle(method, environ.get("PATH_INFO", "/"),
                                   environ.get("QUERY_STRING", ""), headers, body,
                                   environ.get("REMOTE_ADDR", ""), too_big, self.bind)
        start_response(f"{resp.status} {phrase(resp.status) or 'OK'}", [
            ("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))),
            ("X-Request-Id", req_id), ("Cache-Control", "no-store"), *resp.headers])
        return [resp.body] if method != "HEAD" else [b""]

    def handle(self, method: str, path: str, query_string: str, headers: dict[str, str],
               body: bytes, client: str, too_big: bool = False,
               local: str = "") -> tuple[Response, str]:
        """The answer to one request and its id; never raises. `local`: the address the
        caller connected to (for the Host check)."""
        t0 = time.perf_counter()
        req_id = uuid.uuid4().hex[:12]
        req: Request | None = None
        try:
            refused = self.hosts.problem(headers, local or self.bind)
            if refused is not None:
                log.warning("shim.foreign_host", client=client, path=path,
                            host=headers.get("host", "")[:80],
                            origin=headers.get("origin", "")[:80])
                resp = reply(403, refused)
            else:
                resp, req = self._dispatch(method, path, query_string, headers, body, client,
                                           req_id, too_big)
        except Exception as exc:  # never a stack trace to the caller
            log.exception("shim.internal_error", path=path, request_id=req_id,
                          error_type=type(exc).__name__)
            resp = reply(INTERNAL, f"内部服务错误 internal error (request {req_id}; "
                                   "see the gateway log)")
        resp.request_id = req_id
        route = self.routes.find(path)
        endpoint = route.path if route else mount_of(self.mounts, path) or "other"
        HTTP_REQUESTS.labels(endpoint, str(resp.code or resp.status)).inc()
        (log.debug if resp.quiet else log.info)(
            "shim.request", method=method, path=path, client=client, status=resp.status,
            code=resp.code, ms=round((time.perf_counter() - t0) * 1000, 2),
            request_id=req_id, **(req.context if req else {}))
        return resp, req_id

    def _dispatch(self, method: str, path: str, query_string: str, headers: dict[str, str],
                  body: bytes, client: str, req_id: str,
                  too_big: bool) -> tuple[Response, Request | None]:
        prefix = mount_of(self.mounts, path)
        if prefix is not None:  # a mounted application (the console), same allow-list
            if not self.allowed(client):
                log.warning("shim.denied", client=client, path=path)
                return reply(403, f"caller {client} is not in shim.allow"), None
            if too_big:
                return too_large(self.max_body), None
            return call_mounted(self.mounts[prefix], prefix, method, path, query_string,
                                headers, body, client, req_id), None
        route = self.routes.find(path)
        if route is None:
            return reply(404, f"no such endpoint {path} (see /openapi.json)"), None
        if not route.open_access and not self.allowed(client):
            log.warning("shim.denied", client=client, path=path)
            return reply(403, f"caller {client} is not in shim.allow"), None
        if method not in route.methods and not (method == "HEAD" and "GET" in route.methods):
            return reply(405, f"{method} not allowed on {route.path} "
                              f"(use {', '.join(route.methods)})"), None
        if too_big:
            return too_large(self.max_body), None
        req = Request(method, path, query_string, headers, body, client, req_id)
        try:
            return route.handler(req), req
        except ForeignHospital as exc:
            req.context["refused_hospital_id"] = exc.hospital_id
            if self.on_foreign is not None:
                self.on_foreign(req, exc)
            return reply(BAD_PARAMS, f"{MESSAGES[BAD_PARAMS]}: {exc}"), req
        except ParamError as exc:
            req.context["invalid"] = [p.split(" ", 1)[0] for p in exc.problems]
            return reply(BAD_PARAMS, f"{MESSAGES[BAD_PARAMS]}: {exc}"), req
        except BadBody as exc:
            return reply(BAD_PARAMS, f"request body unreadable: {exc} (expected a UTF-8 JSON "
                                     "object or form fields)"), req

    def allowed(self, client: str) -> bool:
        addr = client_ip(client)
        return addr is not None and any(addr in net for net in self.allow)


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


def too_large(limit: int) -> Response:
    """Over shim.max_body: HTTP 413, and the spec's code 202 (invalid parameters)."""
    return reply(BAD_PARAMS, f"{MESSAGES[BAD_PARAMS]}: request body over the limit of {limit} "
                             "bytes (shim.max_body)", status=413)
