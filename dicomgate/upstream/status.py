"""The `upstream` section of `dicomgate status`, the cloud probe and its health check."""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..humanize import human_age, human_bytes
from ..state import Store
from ..state.kinds import UPSTREAM_KINDS
from .dicomweb import DicomWebClient
from .errors import UpstreamError
from .rest import RestClient
from .transport import Reachability

log = structlog.get_logger("dicomgate.upstream")


class UpstreamStatus:
    def __init__(self, store: Store, reach: Reachability, dicomweb: DicomWebClient,
                 rest: RestClient, wake: Any = None):
        self.store = store
        self.reach = reach
        self.dicomweb = dicomweb
        self.rest = rest
        self.wake = wake  # called when the cloud comes back: backed-off work runs now

    def section(self) -> dict[str, Any]:
        b = self.store.delivery.backlog()
        out: dict[str, Any] = {
            "spool": f"{b['spool_instances']} instance(s), {human_bytes(b['spool_bytes'])}",
            "backlog": (f"{b['backlog_instances']} instance(s) in {b['backlog_studies']} "
                        f"study(ies), {human_bytes(b['backlog_bytes'])}, oldest "
                        f"{human_age(b['oldest_age_seconds'])}"),
            "rejected_instances": b["instances_by_state"].get("rejected", 0),
            "spool_bytes": b["spool_bytes"],
            "backlog_instances": b["backlog_instances"],
            "backlog_bytes": b["backlog_bytes"],
            "oldest_age_seconds": b["oldest_age_seconds"],
        }
        now = time.time()
        reach = self.reach.snapshot()
        for target in ("dicomweb", "api"):
            r = reach.get(target)
            if r is None:
                out[f"cloud_{target}"] = "not contacted yet"
                continue
            age = human_age(now - r["at"])
            out[f"cloud_{target}"] = (f"reachable ({age} ago)" if r["reachable"] else
                                      f"UNREACHABLE ({age} ago): {r['error']}")
        return out

    def health(self) -> str | None:
        bad = [f"{t}: {r['error']}" for t, r in self.reach.snapshot().items()
               if not r["reachable"]]
        return "cloud unreachable: " + "; ".join(bad) if bad else None

    def probe(self) -> str:
        """Periodic: is the cloud there? When it comes back, due the backed-off work now."""
        before = self.reach.snapshot()
        results = {}
        for target, check in (("dicomweb", self.dicomweb.probe), ("api", self.rest.ping)):
            try:
                check()
                results[target] = "ok"
            except UpstreamError as exc:
                results[target] = f"failed: {exc}"
        was_down = any(not r["reachable"] for r in before.values())
        if was_down and results.get("dicomweb") == "ok":
            n = self.store.tasks.make_due(UPSTREAM_KINDS)
            log.info("cloud.back", tasks_due_now=n)
            if self.wake:
                self.wake()
        return ", ".join(f"{k} {v}" for k, v in results.items())
