"""The `workers` section of `dicomgate status`: per lane its threads, busy, due and waiting
work, read from the state store, so it says the same whether the daemon runs or not."""

from __future__ import annotations

import sys
from typing import Any

from ..app import App
from .context import print_table


def workers_section(app: App, daemon_running: bool) -> dict[str, Any]:
    queue = app.store.tasks.queue_by_kind()
    lanes: dict[str, Any] = {}
    for lane, (kinds, size) in app.registry.lanes(app.config.tasks.workers).items():
        mine = [queue.get(k, {}) for k in kinds]
        waiting: dict[str, int] = {}
        for q in mine:
            for reason, n in q.get("waiting", {}).items():
                waiting[reason] = waiting.get(reason, 0) + n
        try:
            note = app.lane_notes[lane]() if lane in app.lane_notes else None
        except Exception as exc:  # a note must never break `status`
            note = f"cannot tell: {exc}"
        lanes[lane] = {
            "threads": size, "kinds": kinds,
            # running rows hold a lease: the daemon's busy threads (or, with no daemon,
            # tasks it left behind; the next start takes them back)
            "busy": sum(q.get("running", 0) for q in mine),
            "due": sum(q.get("due", 0) for q in mine),
            "later": sum(q.get("later", 0) for q in mine),
            "waiting": dict(sorted(waiting.items())),
            "note": note,
        }
    out: dict[str, Any] = {"daemon_running": daemon_running, "lanes": lanes}
    if not daemon_running:
        out["note"] = ("the daemon is not running: no worker threads; counts from the "
                       "state store, this work runs once the daemon starts")
    return out


def print_workers(d: dict[str, Any]) -> None:
    w = sys.stdout.write
    w("\nworkers:" + ("" if d["daemon_running"] else f"  ({d['note']})") + "\n")
    rows = []
    for lane, x in d["lanes"].items():
        waits = ", ".join(f"{n} for {reason}" for reason, n in x["waiting"].items())
        rows.append({"lane": lane, "threads": x["threads"], "busy": x["busy"],
                     "due": x["due"], "later": x["later"], "waiting": waits or "-",
                     "kinds": ", ".join(x["kinds"])})
    print_table(rows, ["lane", "threads", "busy", "due", "later", "waiting", "kinds"])
    for lane, x in d["lanes"].items():
        if x["note"]:
            w(f"  {lane}: {x['note']}\n")
