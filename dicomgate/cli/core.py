"""check-config, run, status."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import structlog

from .. import __version__, daemon, logs
from ..app import App
from ..buildinfo import build_info, one_line
from ..config import Config, ConfigError, config_path, load
from ..humanize import human_bytes
from ..nodes import nodes_view
from ..state import STATES
from ..state.names import TaskState
from .context import (
    EXIT_FAILED,
    EXIT_NO_STATE,
    EXIT_USAGE,
    CommandError,
    daemon_pid,
    load_config,
    open_app,
    print_json,
    print_table,
    when,
)
from .status_workers import print_workers, workers_section

log = structlog.get_logger("dicomgate.daemon")


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon writes only JSON lines (journald), its fatal start-up errors included."""
    path = config_path(args.config)
    try:
        config = load(path)
    except ConfigError as exc:
        logs.configure()  # the file's [log] is unknown: the default (JSON off a TTY)
        log.critical("daemon.config_invalid", config=str(exc.path), problems=exc.lines,
                     effect="not started: fix these keys (dicomgate check-config)")
        return EXIT_USAGE
    logs.configure(config.log.level, config.log.format)
    try:
        return daemon.run(config)
    except daemon.DaemonError as exc:
        log.critical("daemon.failed", error=str(exc))
    except Exception as exc:  # a component could not start (a port in use, ...)
        if os.environ.get("DICOMGATE_DEBUG"):
            raise
        log.critical("daemon.failed", error=str(exc) or type(exc).__name__,
                     error_type=type(exc).__name__)
    return EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    try:
        data = gather_status(open_app(args, create=False))
    except CommandError as exc:
        if exc.code != EXIT_NO_STATE:
            raise
        data = no_state_status(load_config(args), str(exc))
    if args.json:
        print_json(data)
    else:
        print_status(data)
    return 0


def gather_status(app: App) -> dict[str, Any]:
    cfg = app.config
    store = app.store
    pid = daemon_pid(cfg)
    dead = store.tasks.list(state=TaskState.DEAD, limit=20)
    sections: dict[str, Any] = {}
    for name, fn in app.status_sections.items():
        try:
            sections[name] = fn()
        except Exception as exc:
            sections[name] = {"error": str(exc)}
    return {
        **_outline(cfg, pid),
        "schema_version": store.schema_version(),
        "tasks": store.tasks.counts(),
        "workers": workers_section(app, pid is not None),
        "store": {"engine": store.db.engine, "where": store.db.where},
        "nodes": [{**n, "last_seen": when(n["last_seen"]), "started_at": when(n["started_at"])}
                  for n in nodes_view(cfg, store, pid is not None)],
        "dead_tasks": [{"id": t.id, "kind": t.kind, "key": t.key, "attempts": t.attempts,
                        "error": t.last_error, "at": when(t.finished_at)} for t in dead],
        "jobs": [{**j, "started_at": when(j["started_at"]),
                  "finished_at": when(j["finished_at"])} for j in store.jobs.all()],
        "sections": sections,
    }


def no_state_status(cfg: Config, why: str) -> dict[str, Any]:
    """What `status` can say before anything has created the state store."""
    return {**_outline(cfg, daemon_pid(cfg)), "schema_version": None, "no_state": why,
            "tasks": {}, "workers": None, "dead_tasks": [], "jobs": [], "sections": {},
            "nodes": []}


def _outline(cfg: Config, pid: int | None) -> dict[str, Any]:
    state_dir = cfg.gateway.state_dir
    disk = shutil.disk_usage(state_dir if state_dir.exists() else _existing(state_dir))
    return {
        "version": __version__,
        "build": build_info(),
        "config": str(cfg.path),
        "hospital_id": cfg.gateway.hospital_id,
        "state_dir": str(state_dir),
        "daemon": {"running": pid is not None, "pid": pid},
        "features": cfg.features(),
        "disk": {"free_bytes": disk.free, "total_bytes": disk.total,
                 "min_free_bytes": cfg.dicom.min_free_disk,
                 "below_floor": disk.free < cfg.dicom.min_free_disk},
    }


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def print_status(d: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(one_line(d["schema_version"]) + "\n")
    w(f"config:      {d['config']}\n")
    w(f"hospital:    {d['hospital_id']}\n")
    schema = (f"schema {d['schema_version']}" if d["schema_version"] is not None
              else d["no_state"])
    w(f"state dir:   {d['state_dir']} ({schema})\n")
    dm = d["daemon"]
    w(f"daemon:      {'running, pid ' + str(dm['pid']) if dm['running'] else 'not running'}\n")
    disk = d["disk"]
    warn = "  BELOW dicom.min_free_disk: C-STORE refused" if disk["below_floor"] else ""
    w(f"disk free:   {human_bytes(disk['free_bytes'])} of {human_bytes(disk['total_bytes'])} "
      f"(floor {human_bytes(disk['min_free_bytes'])}){warn}\n")
    on = [k for k, enabled in d["features"].items() if enabled]
    w("features:    " + (", ".join(on) or "none (see dicomgate check-config)") + "\n")
    w("\ntasks:\n")
    rows = [{"kind": k, **{s: v.get(s, 0) for s in STATES}} for k, v in d["tasks"].items()]
    print_table(rows, ["kind", *STATES])
    if d["workers"] is not None:
        print_workers(d["workers"])
    if d.get("store", {}).get("engine") == "postgresql":
        w(f"\nnodes sharing {d['store']['where']}:\n")
        print_table([{**n, "alive": "yes" if n["alive"] else "NO",
                      "leader": "leader" if n["leader"] else ""} for n in d["nodes"]],
                    ["name", "alive", "leader", "last_seen", "tasks_done", "ae_title"])
    w(f"\ndead tasks ({len(d['dead_tasks'])}):\n")
    print_table(d["dead_tasks"], ["id", "kind", "key", "attempts", "at", "error"])
    w("\nscheduled jobs:\n")
    print_table(d["jobs"], ["name", "finished_at", "outcome", "runs", "failures", "detail"])
    for name, section in d["sections"].items():
        w(f"\n{name}:\n")
        _print_mapping(section, 1)


def _print_mapping(m: dict[str, Any], depth: int) -> None:
    pad = "  " * depth
    for k, v in m.items():
        if isinstance(v, dict) and v:
            sys.stdout.write(f"{pad}{k}:\n")
            _print_mapping(v, depth + 1)
        elif isinstance(v, list) and v:  # one item a line
            sys.stdout.write(f"{pad}{k}:\n")
            for item in v:
                sys.stdout.write(f"{pad}  - {item}\n")
        else:
            sys.stdout.write(f"{pad}{k}: {'-' if v is None else v}\n")
