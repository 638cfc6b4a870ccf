"""`dicomgate migrate`: back the state store up, then bring its schema to this version's."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..daemon_lock import DaemonLock
from ..state import SchemaTooNew, StateError, migrate
from ..state.db import secure_dir
from .context import EXIT_FAILED, EXIT_LOCKED, EXIT_SCHEMA, CommandError, load_config, print_json


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load_config(args)
    state_dir = config.gateway.state_dir
    backup_dir = Path(args.backup_dir) if args.backup_dir else state_dir / "backups"
    try:
        secure_dir(state_dir)
    except StateError as exc:
        raise CommandError(str(exc)) from None
    lock = DaemonLock(state_dir)
    if not lock.acquire():
        raise CommandError(f"the daemon (pid {lock.holder()}) holds {lock.path}: stop it "
                           "first (systemctl stop dicomgate), then run `dicomgate migrate`",
                           EXIT_LOCKED)
    try:
        report = migrate(config.store_location, backup_dir)
    except StateError as exc:
        raise CommandError(str(exc), EXIT_SCHEMA if isinstance(exc, SchemaTooNew)
                           else EXIT_FAILED) from None
    finally:
        lock.release()
    if args.json:
        print_json({"schema_from": report.from_version, "schema_to": report.to_version,
                    "applied": list(report.applied),
                    "backup": str(report.backup) if report.backup else None})
    elif not report.applied:
        print(f"schema {report.to_version}, nothing to do")
    else:
        print(f"schema {report.from_version} -> {report.to_version}: applied "
              + ", ".join(report.applied))
        print(f"backup: {report.backup}" if report.backup else
              "backup: none (the store was new and empty)" if config.state is None else
              "backup: none taken (PostgreSQL: back it up with pg_dump before upgrading)")
    return 0
