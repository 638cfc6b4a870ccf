"""The shim's HTTP service, started and stopped by the daemon: the asyncio front
(shim/front.py) with its worker pools. (bench/waitress_front.py serves the same application
with waitress, for bench/shim.py's comparison only.)"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from ..config.model import ShimConfig
from ..metrics import HTTP_POOL_IN_FLIGHT
from .front import HttpFront
from .hosts import HostCheck
from .http import Request, RouteTable, ShimApp
from .params import ForeignHospital
from .pools import BoundedPool

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
        self._front: HttpFront | None = None

    @property
    def port(self) -> int | None:
        return self._front.port if self._front else None

    def start(self) -> None:
        cfg = self.config
        self.pools = {"main": BoundedPool("main", cfg.threads, cfg.queue),
                      "print": BoundedPool("print", cfg.threads, cfg.queue),
                      "lookup": BoundedPool("lookup", cfg.lookup_threads, cfg.lookup_queue)}
        for name, pool in self.pools.items():
            HTTP_POOL_IN_FLIGHT.labels(name).set_function(lambda p=pool: p.stats().in_flight)
        app = ShimApp(self.routes, cfg.allow, cfg.max_body, self.on_foreign, self.mounts,
                      HostCheck(cfg.host_names), cfg.bind)
        try:
            front = HttpFront(app, self.routes, cfg, self.pools)
            front.start()
        except OSError as exc:
            raise ShimError(f"HTTP shim cannot listen on {cfg.bind}:{cfg.port}: "
                            f"{exc.strerror or exc} (change shim.port or stop the program "
                            "holding it)") from None
        self._front = front
        log.info("shim.listening", bind=cfg.bind, port=self.port,
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
