"""What every command needs: the config, the state store, an App; errors and output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from ..app import App, DaemonLock, Progress
from ..config import Config, config_path, load
from ..state import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def load_config(args: argparse.Namespace) -> Config:
    return load(config_path(args.config))


def open_app(args: argparse.Namespace, progress: Progress | None = None) -> App:
    """Config + state store + registered features, nothing started."""
    config = load_config(args)
    return App.build(config, Store(config.gateway.db_path), progress)


def cli_actor() -> str:
    """`cli:<unix user>` for the audit trail, as the console records `console:<name>@<client>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def audit(app: App, action: str, subject: str, outcome: str, message: str) -> None:
    """Record an operator action taken from the command line (same trail as the console)."""
    app.store.audit.record(cli_actor(), f"cli.{action}", subject, outcome,
                           {"via": "cli", "message": message})


def daemon_pid(config: Config) -> int | None:
    return DaemonLock(config.gateway.state_dir).holder()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    text = str(v).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def when(ts: float | None) -> str | None:
    if ts is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
