"""The refusals the shim's HTTP front makes: their answers, in the spec's JSON, and their
log (one summary line per period, not one line per refused connection)."""

from __future__ import annotations

import collections

import h11
import structlog

from ..metrics import HTTP_REQUESTS
from .http import BAD_PARAMS, Response, phrase, reply
from .pools import BoundedPool

log = structlog.get_logger("dicomgate.shim")

MAX_HEAD = 64 * 1024
SUMMARY_EVERY = 10.0  # refusals are logged as one summary line per period, not one per caller


class RefusalLog:
    """Counts refused connections by reason and source; one log line per period."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def add(self, reason: str, client: str) -> None:
        self.counts[(reason, client)] += 1
        HTTP_REQUESTS.labels("connection", reason).inc()

    def flush(self) -> None:
        if not self.counts:
            return
        by_reason: collections.Counter[str] = collections.Counter()
        by_source: collections.Counter[str] = collections.Counter()
        for (reason, client), n in self.counts.items():
            by_reason[reason] += n
            by_source[client] += n
        log.warning("shim.connections_refused", total=sum(by_reason.values()),
                    by_reason=dict(by_reason), top_sources=dict(by_source.most_common(5)),
                    period_s=SUMMARY_EVERY)
        self.counts.clear()


def raw_response(resp: Response) -> bytes:
    """An answer written outside h11 (refusals; the connection closes after it)."""
    head = (f"HTTP/1.1 {resp.status} {phrase(resp.status) or 'Error'}\r\n"
            f"Content-Type: {resp.content_type}\r\nContent-Length: {len(resp.body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\nServer: dicomgate\r\n\r\n")
    return head.encode("latin-1") + resp.body


def malformed(exc: h11.RemoteProtocolError) -> Response:
    status = exc.error_status_hint if phrase(exc.error_status_hint) else 400
    if status == 431:
        return reply(431, f"request head over {MAX_HEAD // 1024} KiB")
    return reply(status, f"malformed HTTP request: {exc}")


def busy(pool: BoundedPool) -> Response:
    if pool.name == "lookup":  # the spec's code 202 so the plugin shows the reason, not an error
        return reply(BAD_PARAMS, f"busy: {pool.workers} external lookups already running and "
                                 f"{pool.queue} waiting (shim.lookup_threads, "
                                 "shim.lookup_queue); try again in a few seconds")
    return reply(503, f"busy: {pool.workers + pool.queue} requests in progress (shim.threads, "
                      "shim.queue); try again in a moment")
