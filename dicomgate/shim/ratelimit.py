"""Per-source token buckets (shim.rate requests per second, shim.burst at once). A request
costs its route's weight (a QR PNG costs what ~25 URLs cost): one address flooding the front
slows itself down and leaves the workers to everybody else."""

from __future__ import annotations

import time

MAX_WAIT = 2.0  # a request waits at most this long for its tokens; past that, 503
_PRUNE_AT = 10_000  # sources remembered before the full (idle) buckets are forgotten


class Buckets:
    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)

    def take(self, source: str, cost: float) -> float | None:
        """Seconds to wait before serving (0: at once), or None: refuse (over MAX_WAIT)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, when = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate) - cost
        if tokens < 0 and -tokens / self.rate > MAX_WAIT:
            self._buckets[source] = (tokens + cost, now)
            return None
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)
        return max(0.0, -tokens / self.rate)

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        self._buckets = {s: (t, w) for s, (t, w) in self._buckets.items() if now - w < full}
