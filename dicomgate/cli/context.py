"""What every command needs: the config, the state store, an App; errors and output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config import Config, config_path, load
from ..daemon_lock import DaemonLock
from ..state import NoState, SchemaTooNew, SchemaTooOld, Store, migrate

if TYPE_CHECKING:  # the App (its features, the scheduler) is imported by commands that build one
    from ..app import App, Progress

# Exit codes (also in cli/__init__.py and docs/operations.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_LOCKED = 3  # `migrate`: a daemon holds the state dir's lock
EXIT_SCHEMA = 4  # the store's schema is older or newer than this dicomgate's
EXIT_NO_STATE = 5  # nothing has created the state store yet


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def load_config(args: argparse.Namespace) -> Config:
    return load(config_path(args.config))


def open_app(args: argparse.Namespace, progress: Progress | None = None, *,
             create: bool = True) -> App:
    """Config + state store + registered features, nothing started. `create=False` for
    commands that only read: on a state dir where nothing has run they say so."""
    from ..app import App

    config = load_config(args)
    return App.build(config, open_store(config, create), progress)


_opened = threading.local()  # the stores the command running on this thread opened


@contextmanager
def closing_stores() -> Iterator[None]:
    """Close, when the command ends, every store it opened: a command run in a process that
    lives on (tests, the console's `act`) must not keep its PostgreSQL connections."""
    _opened.stores = []
    try:
        yield
    finally:
        for store in _opened.stores:
            store.close()
        _opened.stores = []


def open_store(config: Config, create: bool = True) -> Store:
    store = _open_store(config, create)
    if getattr(_opened, "stores", None) is not None:
        _opened.stores.append(store)
    return store


def _open_store(config: Config, create: bool = True) -> Store:
    """The store as it is: an existing one is never migrated (only the daemon, under its
    lock, and `dicomgate migrate` do) and a schema this version does not know is refused.
    `create`: where nothing has run yet and no daemon is starting, create it (there is no
    data to upgrade or back up; creators racing the daemon each apply a migration once)."""
    path = config.store_location
    try:
        return Store.open(path)
    except NoState as exc:
        pid = daemon_pid(config)
        if pid is not None:
            raise _busy(config, pid, EXIT_NO_STATE) from None
        if not create:
            raise CommandError(str(exc), EXIT_NO_STATE) from None
        migrate(path, backup_dir=None)
        return Store.open(path)
    except SchemaTooOld as exc:
        pid = daemon_pid(config)
        raise (_busy(config, pid, EXIT_SCHEMA) if pid is not None
               else CommandError(str(exc), EXIT_SCHEMA)) from None
    except SchemaTooNew as exc:
        raise CommandError(str(exc), EXIT_SCHEMA) from None


def _busy(config: Config, pid: int, code: int) -> CommandError:
    """The daemon holds the lock and the store is not current: it is creating or upgrading
    it at this moment."""
    return CommandError(f"the daemon (pid {pid}) is bringing the state store in "
                        f"{config.gateway.state_dir} up to date: try again in a moment", code)


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
