"""The console as a plain WSGI application, mounted by the shim under /console.

GET  /                      the page (static/index.html; scripts and styles from static/)
GET  /api/session           what the caller may do, the page's language and refresh period
GET  /api/overview | /api/exams | /api/exams/<id> | /api/problems | /api/audit
POST /api/actions/<name>    an operator action (see actions.py); JSON body

Everything is served from the package (hospitals are offline). Answers are JSON; errors are
{"error": "..."} with a 4xx/5xx status, never a stack trace.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

import structlog

from ..app import App
from ..config.model import ConsoleConfig
from . import actions, schema
from .views import Views

log = structlog.get_logger("dicomgate.console")

_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_STATIC_NAME = re.compile(r"^[a-z0-9_-]{1,64}\.(html|js|css|svg)$")
# No inline script, no other origin: the page runs only the files shipped with it.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MAX_BODY = 16 * 1024
OVERVIEW_TTL = 1.0  # seconds an overview answer is shared between open pages


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ConsoleApp:
    def __init__(self, app: App, cfg: ConsoleConfig):
        self.app = app
        self.cfg = cfg
        self.views = Views(app)
        self.gate = actions.Gate(cfg)
        self._static = resources.files(__package__) / "static"
        self._overview: tuple[float, Any] = (0.0, None)
        self._overview_lock = threading.Lock()
        self._gets: dict[str, Callable[[dict[str, str], dict], Any]] = {
            "/api/session": self._session, "/api/overview": self._shared_overview,
            "/api/exams": self._exams, "/api/problems": lambda q, e: self.views.problems(),
            "/api/audit": self._audit,
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            if path == "":  # /console -> /console/ so relative links resolve
                return self._send(start_response, 301, b"", "text/plain",
                                  [("Location", environ.get("SCRIPT_NAME", "") + "/")])
            if path.startswith("/api/"):
                return self._api(environ, start_response, method, path)
            if method not in ("GET", "HEAD"):
                raise HttpError(405, f"{method} not allowed here (use GET)")
            return self._file(start_response, "index.html" if path == "/" else
                              path.removeprefix("/static/"), method)
        except HttpError as exc:
            return self._json(start_response, exc.status, {"error": str(exc)})
        except Exception as exc:  # never a trace to the page
            req = environ.get("HTTP_X_REQUEST_ID", "")
            log.exception("console.internal_error", path=path, request_id=req,
                          error_type=type(exc).__name__)
            return self._json(start_response, 500, {
                "error": f"internal error (request {req}; see the gateway log)"})

    # -- API ------------------------------------------------------------------------------
    def _api(self, environ: dict, start_response: Callable, method: str,
             path: str) -> Iterable[bytes]:
        if path.startswith("/api/actions/"):
            if method != "POST":
                raise HttpError(405, "actions are POST requests")
            return self._action(environ, start_response, path.removeprefix("/api/actions/"))
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} not allowed on {path} (use GET)")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        m = re.fullmatch(r"/api/exams/(\d{1,12})", path)
        if m:
            data = self.views.exam(int(m.group(1)))
            if data is None:
                raise HttpError(404, f"no exam {m.group(1)}")
            return self._json(start_response, 200, data)
        handler = self._gets.get(path)
        if handler is None:
            raise HttpError(404, f"no console endpoint {path}")
        return self._json(start_response, 200, handler(query, environ))

    def _shared_overview(self, _q: dict[str, str], _e: dict) -> Any:
        """Several open pages cost one computation per second: the overview is the
        heaviest read (every exam of today with its pipeline)."""
        with self._overview_lock:
            at, data = self._overview
            if data is None or time.monotonic() - at > OVERVIEW_TTL:
                data = self.views.overview()
                self._overview = (time.monotonic(), data)
            return data

    def _session(self, _q: dict[str, str], environ: dict) -> dict[str, Any]:
        via = self.gate.how(environ.get("REMOTE_ADDR", ""),
                            environ.get("HTTP_AUTHORIZATION", ""))
        return {"can_act": via is not None, "via": via,
                "token_configured": self.cfg.operator_token is not None,
                "local_actions": self.cfg.local_actions,
                "actions": actions.available(self.app) if via else [],
                "language": self.cfg.language, "refresh": self.cfg.refresh,
                "hospital_id": self.app.config.gateway.hospital_id,
                "timezone": self.app.config.gateway.timezone.key}

    def _exams(self, q: dict[str, str], _e: dict) -> dict[str, Any]:
        f = _parse(schema.ExamsQuery, q)
        return self.views.exams(f.accession or None, _day(f.day_from, "from"),
                                _day(f.to, "to"), f.stage or None, _limit(f.limit))

    def _audit(self, q: dict[str, str], _e: dict) -> dict[str, Any]:
        f = _parse(schema.AuditQuery, q)
        return self.views.audit(f.action or None, f.q or None, _day(f.day_from, "from"),
                                _day(f.to, "to"))

    def _action(self, environ: dict, start_response: Callable, name: str) -> Iterable[bytes]:
        _same_origin(environ)
        body = _read_json(environ)
        try:
            caller = self.gate.caller(environ.get("REMOTE_ADDR", ""),
                                      environ.get("HTTP_AUTHORIZATION", ""),
                                      unquote(environ.get("HTTP_X_OPERATOR", "")))
            if name in schema.ACTION_BODIES:
                _parse(schema.ACTION_BODIES[name], body)
            result = actions.perform(self.app, name, body, caller)
        except actions.Refused as exc:
            log.warning("console.action_refused", action=name, status=exc.status,
                        client=environ.get("REMOTE_ADDR", ""), reason=str(exc))
            raise HttpError(exc.status, str(exc)) from None
        return self._json(start_response, 200 if result["ok"] else 409, result)

    # -- answers --------------------------------------------------------------------------
    def _file(self, start_response: Callable, name: str, method: str) -> Iterable[bytes]:
        if not _STATIC_NAME.match(name):
            raise HttpError(404, f"no such page {name}")
        f = self._static / name
        if not f.is_file():
            raise HttpError(404, f"no such page {name}")
        ctype = _STATIC_TYPES["." + name.rsplit(".", 1)[1]]
        data = f.read_bytes()
        return self._send(start_response, 200, b"" if method == "HEAD" else data, ctype,
                          length=len(data))

    def _json(self, start_response: Callable, status: int, data: Any) -> Iterable[bytes]:
        body = json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
        return self._send(start_response, status, body, "application/json; charset=utf-8")

    def _send(self, start_response: Callable, status: int, body: bytes, ctype: str,
              extra: list[tuple[str, str]] | None = None,
              length: int | None = None) -> Iterable[bytes]:
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", ctype), ("Content-Length", str(len(body) if length is None
                                                           else length)),
            ("Cache-Control", "no-store"), ("Content-Security-Policy", _CSP),
            ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"), *(extra or [])])
        return [body]


def _same_origin(environ: dict) -> None:
    """Actions come from the console's own page: a custom header (which a foreign page
    cannot send without a CORS preflight we never grant) and, if sent, the same Origin,
    scheme included. Host itself was checked by the shim's front against the gateway's own
    names and addresses (shim/hosts.py), so comparing with it is meaningful."""
    if environ.get("HTTP_X_CONSOLE") != "1":
        raise HttpError(403, "actions must come from the console page (X-Console header)")
    origin = environ.get("HTTP_ORIGIN")
    if origin and origin != f"http://{environ.get('HTTP_HOST', '')}":
        raise HttpError(403, f"request from another site ({origin[:80]}) refused")


def _read_json(environ: dict) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise HttpError(413, f"request body over {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw:
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"body: expected a UTF-8 JSON object ({exc})") from None
    if not isinstance(body, dict):
        raise HttpError(400, "body: expected a JSON object")
    return body


def _parse(model: type, data: dict[str, Any]) -> Any:
    try:
        return schema.parse(model, data)
    except schema.Invalid as exc:
        raise HttpError(400, str(exc)) from None


def _day(value: str, key: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise HttpError(400, f"{key}: {value!r} is not a date (expected YYYY-MM-DD)") from None


def _limit(raw: str) -> int:
    raw = raw or "200"
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise HttpError(400, f"limit: {raw!r} (expected 1-1000)")
    return int(raw)
