"""Requests to the cloud: sessions from dicomgate.http_client, timeouts, reachability."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from ..config import UpstreamConfig
from ..http_client import ThreadSessions
from ..state import Store
from ..state.names import Fact
from .errors import check_status, from_exception

CONNECT_TIMEOUT = 10.0


class Transport:
    def __init__(self, cfg: UpstreamConfig, hospital_id: str, reach: Reachability | None = None):
        self.cfg = cfg
        self.hospital_id = hospital_id
        self.reach = reach
        self._sessions = ThreadSessions(cfg, hospital_id)

    def session(self) -> requests.Session:
        return self._sessions.get()

    def request(self, target: str, method: str, url: str, what: str, check: bool = True,
                **kw: Any) -> requests.Response:
        """One exchange; raises Transient / Refused (errors.py) for anything but 2xx
        (with `check=False` only for connection-level failures: the caller reads the answer).

        `target` ("dicomweb" or "api") is what the reachability report is about."""
        kw.setdefault("timeout", (CONNECT_TIMEOUT, self.cfg.timeout))
        try:
            r = self.session().request(method, url, **kw)
        except requests.RequestException as exc:
            err = from_exception(exc, what)
            if self.reach:
                self.reach.failed(target, str(err))
            raise err from None
        if self.reach:
            if r.status_code >= 500 or r.status_code in (401, 403, 407, 429):
                self.reach.failed(target, f"HTTP {r.status_code}")
            else:
                self.reach.ok(target)
        if check:
            check_status(r, what)
        return r


class Reachability:
    """The last known outcome per cloud endpoint, kept in the state store for `status`."""

    FACT = Fact.UPSTREAM_REACHABILITY

    def __init__(self, store: Store, min_interval: float = 30.0):
        self.store = store
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last: dict[str, tuple[bool, float]] = {}

    def ok(self, target: str) -> None:
        self._record(target, True, None)

    def failed(self, target: str, error: str) -> None:
        self._record(target, False, error)

    def _record(self, target: str, ok: bool, error: str | None) -> None:
        now = time.time()
        with self._lock:
            prev = self._last.get(target)
            if prev and prev[0] == ok and now - prev[1] < self.min_interval:
                return  # unchanged and recent: spare the database a write per request
            self._last[target] = (ok, now)
        try:
            facts = self.store.facts.get(self.FACT, {}) or {}
            facts[target] = {"reachable": ok, "at": now, "error": error}
            self.store.facts.set(self.FACT, facts)
        except Exception:  # reachability is informative; never fail an upload over it
            pass

    def snapshot(self) -> dict[str, Any]:
        return self.store.facts.get(self.FACT, {}) or {}
