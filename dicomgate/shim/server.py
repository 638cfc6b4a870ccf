"""The shim's HTTP server: waitress in a thread, started and stopped by the daemon."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from waitress import wasyncore
from waitress.server import create_server

from ..config.model import ShimConfig
from .http import RouteTable, ShimApp

log = structlog.get_logger("dicomgate.shim")


class ShimError(Exception):
    """The shim cannot start; the message says what to fix."""


class ShimService:
    name = "http shim"

    def __init__(self, config: ShimConfig, routes: RouteTable,
                 on_stop: Callable[[], None] | None = None,
                 mounts: dict[str, Callable] | None = None):
        self.config = config
        self.routes = routes
        self.mounts = mounts if mounts is not None else {}  # read at start(): filled by then
        self.on_stop = on_stop
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return int(self._server.effective_port) if self._server else None

    def start(self) -> None:
        app = ShimApp(self.routes, self.config.allow, self.config.max_body, self.mounts)
        try:
            self._server = create_server(
                app, host=self.config.bind, port=self.config.port,
                threads=self.config.threads, ident="dicomgate",
                # waitress's own limit answers in plain text: leave the JSON refusal to ShimApp
                # for bodies up to twice the limit, and let waitress cut off anything larger.
                max_request_body_size=2 * self.config.max_body + 64 * 1024,
                max_request_header_size=64 * 1024, channel_timeout=30,
                connection_limit=200, expose_tracebacks=False)
        except OSError as exc:
            raise ShimError(f"HTTP shim cannot listen on {self.config.bind}:"
                            f"{self.config.port}: {exc.strerror or exc} (change shim.port or "
                            "stop the program holding it)") from None
        self._thread = threading.Thread(target=self._serve, name="shim-http", daemon=True)
        self._thread.start()
        log.info("shim.listening", bind=self.config.bind, port=self.port,
                 routes=[r.path for r in self.routes.all()] + [f"{m}/" for m in self.mounts])

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception as exc:  # the loop ends with an error when closed under it
            if self._server is not None:
                log.error("shim.server_failed", error=str(exc))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop accepting; in-flight requests finish below
            server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(server._map)  # idle keep-alive channels keep the loop alive
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.on_stop:
            self.on_stop()

    def health(self) -> str | None:
        if self._thread is None or not self._thread.is_alive():
            return "HTTP shim is not serving"
        return None
