"""version: what is installed, and the schema of the store the config points at."""

from __future__ import annotations

import argparse
from typing import Any

from ..buildinfo import build_info
from ..config import ConfigError, config_path, load
from ..state.peek import store_schema_version
from .context import print_json


def gather(args: argparse.Namespace) -> dict[str, Any]:
    b = build_info()
    out: dict[str, Any] = {**{k: v for k, v in b.items() if k != "schema"},
                           "schema": {"code": b["schema"], "store": None}}
    path = config_path(args.config)
    try:
        cfg = load(path)
    except ConfigError as exc:
        out["config"] = {"path": str(path), "readable": False,
                         "problem": exc.lines[0] if len(exc.lines) == 1
                         else f"{len(exc.lines)} problems: dicomgate check-config"}
        return out
    except OSError as exc:  # unreadable file (permissions): say so, still print the rest
        out["config"] = {"path": str(path), "readable": False, "problem": str(exc)}
        return out
    out["config"] = {"path": str(path), "readable": True}
    out["state_db"] = str(cfg.gateway.db_path)
    out["schema"]["store"] = store_schema_version(cfg.gateway.db_path)
    return out


def cmd_version(args: argparse.Namespace) -> int:
    d = gather(args)
    if args.json:
        print_json(d)
        return 0
    print(f"dicomgate {d['version']}")
    print(f"python:   {d['python']} ({d['python_path']})")
    print(f"platform: {d['platform']}, {d['libc']}")
    s = d["schema"]
    print(f"schema:   {s['code']} (this code)")
    cfg = d["config"]
    if not cfg["readable"]:
        print(f"store:    unknown: config {cfg['path']} not readable ({cfg['problem']})")
    elif s["store"] is None:
        print(f"store:    none yet at {d['state_db']}")
    else:
        note = "" if s["store"] == s["code"] else (
            ": run `dicomgate migrate`" if s["store"] < s["code"]
            else ": written by a newer dicomgate")
        print(f"store:    schema {s['store']} at {d['state_db']}{note}")
    return 0
