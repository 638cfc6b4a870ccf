"""A WSGI application mounted under a path prefix on the shim's listener (the operator
console at /console): called from the parts of a request, so it runs the same behind any
server the shim uses, and answered as a shim `Response`."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http import Response


def mount_of(mounts: dict[str, Callable], path: str) -> str | None:
    """The prefix `path` falls under ("/console" for "/console" and "/console/..."), or None."""
    for prefix in mounts:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


def call_mounted(app: Callable, prefix: str, method: str, path: str, query_string: str,
                 headers: dict[str, str], body: bytes, client: str, request_id: str,
                 host: str = "", port: int = 0) -> Response:
    """Run the WSGI app for one request; its status, headers and body as a Response."""
    from .http import Response

    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": prefix, "PATH_INFO": path[len(prefix):],
        "QUERY_STRING": query_string, "REMOTE_ADDR": client, "SERVER_NAME": host or "localhost",
        "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": headers.get("content-type", ""), "HTTP_X_REQUEST_ID": request_id,
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        if name not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    got: dict[str, object] = {}

    def start_response(status: str, response_headers: list, exc_info=None):
        got["status"], got["headers"] = status, response_headers
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        data = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    status = int(str(got.get("status", "500")).split(" ", 1)[0])
    extra = [(k, v) for k, v in got.get("headers", [])  # type: ignore[union-attr]
             if k.lower() not in ("content-type", "content-length", "cache-control")]
    ctype = next((v for k, v in got.get("headers", [])  # type: ignore[union-attr]
                  if k.lower() == "content-type"), "application/octet-stream")
    return Response(status, data, content_type=ctype, code=status, headers=tuple(extra),
                    quiet=method in ("GET", "HEAD") and status < 300)
