"""Exponential backoff with jitter, capped."""

from __future__ import annotations

import random


def delay(attempt: int, base: float, maximum: float, jitter: float = 0.2,
          rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    base * 2**(attempt-1), capped at `maximum`, then spread by +-jitter so many
    tasks failing together (the PACS restarted) do not retry in lockstep."""
    rng = rng or random
    raw = min(maximum, base * (2 ** max(0, attempt - 1)))
    return max(0.0, min(maximum, raw * (1 + rng.uniform(-jitter, jitter))))
