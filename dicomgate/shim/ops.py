"""/healthz and /metrics on the shim's port, for monitoring."""

from __future__ import annotations

import json

from .. import metrics
from ..app import App
from ..nodes import nodes_view
from .http import Request, Response

HEALTHZ_PATH = "/healthz"
METRICS_PATH = "/metrics"


def healthz(app: App):
    """200 when every component is alive; 503 listing the reasons otherwise."""

    def handler(_req: Request) -> Response:
        checks = app.health()
        problems = {name: why for name, why in checks.items() if why}
        alive, started = app.pool.alive()
        body = {"status": "ok" if not problems else "unhealthy",
                "checks": {name: why or "ok" for name, why in checks.items()},
                "workers": {"alive": alive, "started": started,
                            "busy": app.pool.busy(), "lanes": app.pool.lanes_status()}}
        if app.node is not None:  # nodes sharing a store: every node, as the store says
            try:
                body["nodes"] = nodes_view(app.config, app.store, True)
            except Exception:  # the store is down: its check above names the URL
                body["nodes"] = None
        return Response(503 if problems else 200,
                        json.dumps(body, ensure_ascii=False).encode("utf-8"),
                        code=503 if problems else 200)

    return handler


def metrics_endpoint(app: App):
    def handler(_req: Request) -> Response:
        return Response(200, metrics.render(app.store, app.config),
                        content_type="text/plain; version=0.0.4; charset=utf-8", code=200)

    return handler
