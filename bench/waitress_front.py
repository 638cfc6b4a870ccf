"""bench only: `dicomgate run` with the shim served by waitress instead of dicomgate's
asyncio front, for bench/shim.py's comparison (`--servers asyncio,waitress`). Not part of
the product, which has one HTTP front; needs `pip install '.[bench]'`. waitress has no
per-source limit nor request deadline.

    python bench/waitress_front.py --config dicomgate.toml run
"""

from __future__ import annotations

import logging
import sys

from dicomgate.config.model import ShimConfig
from dicomgate.shim.http import ShimApp
from dicomgate.shim.pools import BoundedPool, Busy
from dicomgate.shim.refusals import busy


class WaitressFront:
    """waitress serving ShimApp, tuned as far as it goes (for the comparison benchmark).
    Lookups still run in their bounded pool; the waitress thread waits for them."""

    def __init__(self, app: ShimApp, _routes: object, cfg: ShimConfig,
                 pools: dict[str, BoundedPool]):
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


def main(argv: list[str]) -> int:
    import dicomgate.shim.server as server
    from dicomgate.cli import main as dicomgate_main

    server.HttpFront = WaitressFront  # type: ignore[misc,assignment]
    return dicomgate_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
