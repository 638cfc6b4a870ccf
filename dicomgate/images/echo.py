"""Scheduled C-ECHO of the PACS: last result and latency kept as a fact, transitions logged.

PACS DICOM services hang and get restarted (the spec says so): `pacs.down` / `pacs.up`
tell the administrator when, and retrieve tasks retry by themselves meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..state import Store
from ..state.kinds import Retrieve
from ..state.names import Fact
from .scu import PacsClient, PacsRefused, PacsUnavailable

log = structlog.get_logger("dicomgate.images.echo")

FACT = Fact.PACS_ECHO


class EchoMonitor:
    def __init__(self, store: Store, pacs: PacsClient):
        self.store = store
        self.pacs = pacs

    def run(self) -> str:
        """One C-ECHO; the scheduler records the returned detail or the raised error."""
        now = time.time()
        try:
            latency: float | None = self.pacs.echo()
            error = None
        except (PacsUnavailable, PacsRefused) as exc:
            latency, error = None, str(exc)
        ok = error is None
        prev = self.store.facts.get(FACT) or {}
        changed = prev.get("ok") is not ok
        fact = {"ok": ok, "at": now, "error": error,
                "latency_ms": None if latency is None else round(latency * 1000, 1),
                "since": now if changed else prev.get("since", now),
                "pacs": f"{self.pacs.pacs.ae_title}@{self.pacs.pacs.host}:{self.pacs.pacs.port}"}
        self.store.facts.set(FACT, fact)
        if changed and ok:
            woken = self.store.tasks.make_due((Retrieve.kind,))  # retrieves waiting for it
            log.info("pacs.up", pacs=fact["pacs"], latency_ms=fact["latency_ms"],
                     down_for=None if not prev else round(now - prev.get("since", now), 1),
                     retrieves_woken=woken)
        elif changed:
            log.warning("pacs.down", pacs=fact["pacs"], error=error)
        if not ok:
            raise RuntimeError(error)
        return f"C-ECHO {fact['latency_ms']} ms"


def echo_status(store: Store) -> dict[str, Any]:
    fact = store.facts.get(FACT)
    if not fact:
        return {"pacs": "not checked yet"}
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fact["since"]))
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fact["at"]))
    if fact["ok"]:
        return {"pacs": f"up since {since} ({fact['pacs']})",
                "last echo": f"{at}, {fact['latency_ms']} ms"}
    return {"pacs": f"DOWN since {since} ({fact['pacs']})",
            "last echo": f"{at}: {fact['error']}"}


def echo_health(store: Store) -> str | None:
    """For /healthz: None while the last C-ECHO succeeded (or none has run yet)."""
    fact = store.facts.get(FACT)
    if not fact or fact["ok"]:
        return None
    return f"PACS {fact['pacs']} does not answer C-ECHO: {fact['error']}"
