"""The shim's HTTP service, started and stopped by the daemon: the asyncio front
(shim/front.py) with its worker pools.

`shim.server = "waitress"` serves the same application with waitress instead. It is
kept only so bench/shim.py can measure both under the same attack (bench/README.md); waitress
is then needed (`pip install '.[bench]'`) and has no per-source limit nor request deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import structlog

from ..config.model import ShimConfig
from ..metrics import HTTP_POOL_IN_FLIGHT
from .front import HttpFront
from .http import Request, RouteTable, ShimApp
from .params import ForeignHospital
from .pools import BoundedPool, Busy
from .refusals import busy

log = structlog.get_logger("dicomgate.shim")


class ShimError(Exception):
    """The shim cannot start; the message says what to fix."""


class ShimService:
    name = "http shim"

    def __init__(self, config: ShimConfig, routes: RouteTable,
                 on_stop: Callable[[], None] | None = None,
                 on_foreign: Callable[[Request, ForeignHospital], None] | None = None,
                 mounts: dict[str, Callable] | None = None):
        self.config = config
        self.routes = routes
        self.mounts = mounts if mounts is not None else {}  # read at start(): filled by then
        self.on_stop = on_stop
        self.on_foreign = on_foreign
        self.pools: dict[str, BoundedPool] = {}
        self._front: HttpFront | _Waitress | None = None

    @property
    def port(self) -> int | None:
        return self._front.port if self._front else None

    def start(self) -> None:
        cfg = self.config
        self.pools = {"main": BoundedPool("main", cfg.threads, cfg.queue),
                      "lookup": BoundedPool("lookup", cfg.lookup_threads, cfg.lookup_queue)}
        for name, pool in self.pools.items():
            HTTP_POOL_IN_FLIGHT.labels(name).set_function(lambda p=pool: p.stats().in_flight)
        app = ShimApp(self.routes, cfg.allow, cfg.max_body, self.on_foreign, self.mounts)
        kind = cfg.server
        try:
            front = _Waitress(app, cfg, self.pools) if kind == "waitress" else \
                HttpFront(app, self.routes, cfg, self.pools)
            front.start()
        except OSError as exc:
            raise ShimError(f"HTTP shim cannot listen on {cfg.bind}:{cfg.port}: "
                            f"{exc.strerror or exc} (change shim.port or stop the program "
                            "holding it)") from None
        self._front = front
        log.info("shim.listening", bind=cfg.bind, port=self.port, server=kind,
                 routes=[r.path for r in self.routes.all()] + [f"{m}/" for m in self.mounts])

    def stop(self) -> None:
        front, self._front = self._front, None
        if front is not None:
            front.stop()
        for pool in self.pools.values():
            pool.shutdown(timeout=5)
        if self.on_stop:
            self.on_stop()

    def health(self) -> str | None:
        if self._front is None or not self._front.alive():
            return "HTTP shim is not serving"
        return None


class _Waitress:
    """waitress serving ShimApp, tuned as far as it goes (for the comparison benchmark).
    Lookups still run in their bounded pool; the waitress thread waits for them."""

    def __init__(self, app: ShimApp, cfg: ShimConfig, pools: dict[str, BoundedPool]):
        import threading

        from waitress.server import create_server
        # one warning per queued request otherwise
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._threading = threading
        self._server = create_server(
            _pooled(app, pools["lookup"]), host=cfg.bind, port=cfg.port,
            threads=cfg.threads + cfg.lookup_threads + cfg.lookup_queue, ident="dicomgate",
            max_request_body_size=cfg.max_body, max_request_header_size=64 * 1024,
            channel_timeout=cfg.request_timeout, connection_limit=cfg.max_connections,
            cleanup_interval=1, expose_tracebacks=False)
        self._thread = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread = self._threading.Thread(target=self._server.run, name="shim-http",
                                              daemon=True)
        self._thread.start()

    def stop(self) -> None:
        from waitress import wasyncore
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self._server._map)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _pooled(app: ShimApp, lookup: BoundedPool):
    def wsgi(environ: dict, start_response):
        route = app.routes.find(environ.get("PATH_INFO", "/"))
        if route is None or route.pool != "lookup":
            return app(environ, start_response)
        try:
            return lookup.run(lambda: app(environ, start_response))
        except Busy:
            resp = busy(lookup)
            start_response(f"{resp.status} OK", [("Content-Type", resp.content_type),
                                                  ("Content-Length", str(len(resp.body)))])
            return [resp.body]
    return wsgi
