"""Mount the console on the shim's listener when [console] is configured."""

from __future__ import annotations

from ..app import App
from . import actions
from .schema import openapi_paths
from .wsgi import ConsoleApp

PREFIX = "/console"


def setup(app: App) -> None:
    cfg = app.config
    if cfg.console is None or cfg.shim is None:
        return
    console = ConsoleApp(app, cfg.console)
    # the shim's /openapi.json adds what a mounted app declares this way
    console.openapi = lambda: openapi_paths(PREFIX, actions.available(app))
    app.add_mount(PREFIX, console)
    app.add_status("console", lambda: {
        "url": f"http://{cfg.shim.bind}:{cfg.shim.port}{PREFIX}/",
        "actions": ("operator token" if cfg.console.operator_token else "") +
                   (" / local callers" if cfg.console.local_actions else "") or "read-only",
    })
