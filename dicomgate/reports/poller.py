"""The report poller: per event type, read the window since its watermark, apply, advance.

The window of a type is [watermark - overlap, now). Rows are committed batch by
batch; the watermark moves to `now` only after the whole window is committed, so a
failure part-way re-reads the window next time (idempotently) and loses nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ..config import Config
from ..state import Store
from ..state.names import Fact
from . import duplicates
from .apply import Applier, Counts
from .events import BY_CODE, POLL_ORDER, EventType
from .record import Rules, parse_time
from .source import Source, SourceError

log = structlog.get_logger("dicomgate.reports")


@dataclass
class TypeResult:
    type: int | None  # None: an accession lookup
    start: dt.datetime | None
    end: dt.datetime | None
    counts: Counts = field(default_factory=Counts)
    error: str | None = None
    seconds: float = 0.0

    def public(self) -> dict:
        def t(v: dt.datetime | None) -> str | None:
            return v.isoformat(timespec="seconds") if v else None

        return {"type": self.type, "start": t(self.start), "end": t(self.end),
                **self.counts.__dict__, "error": self.error, "seconds": round(self.seconds, 3)}


POLL_ERRORS = Fact.REPORTS_POLL_ERRORS


class SyncFailed(Exception):
    """At least one event type could not be read; the others were applied."""


def watermark_name(event: EventType) -> str:
    return f"reports.type{event.code}"


class Poller:
    def __init__(self, config: Config, store: Store, source_factory: Callable[[], Source]):
        assert config.reports is not None
        self.reports = config.reports
        self.tz = config.gateway.timezone
        self.store = store
        self._source_factory = source_factory
        self._source: Source | None = None
        images_http = config.images is not None and config.images.source == "http"
        encoding = self.reports.view.encoding if self.reports.view else ""
        self.applier = Applier(store, Rules(config.gateway.hospital_id, self.tz, images_http,
                                            encoding, config.gateway.group_hospital_ids),
                               self.reports.settle_delay, images_http)

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = self._source_factory()
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    # -- the scheduled job ---------------------------------------------------------------
    def poll(self) -> str:
        results = self.sync()
        self.record_errors(results)
        summary = "; ".join(_summary(r) for r in results)
        failed = [r for r in results if r.error]
        if failed:
            raise SyncFailed(summary)
        return summary

    def record_errors(self, results: list[TypeResult]) -> None:
        """Keep each type's last error for health and status, until it reads again."""
        errors = dict(self.store.facts.get(POLL_ERRORS) or {})
        for r in results:
            if r.type is not None:
                errors.pop(str(r.type), None)
                if r.error:
                    errors[str(r.type)] = r.error
        self.store.facts.set(POLL_ERRORS, errors)

    def sync(self, types: list[int] | None = None, since: dt.datetime | None = None,
             until: dt.datetime | None = None) -> list[TypeResult]:
        """One pass over `types` (all four by default). An explicit `since` reads that
        window and leaves the watermarks alone (a manual re-read)."""
        wanted = [e for e in POLL_ORDER if types is None or e.code in types]
        now = self.now()
        return [self._sync_type(e, since, until or now, manual=since is not None)
                for e in wanted]

    def sync_accession(self, accession_no: str, types: list[int] | None = None) -> TypeResult:
        result = TypeResult(None, None, None)
        started = time.monotonic()
        try:
            rows = duplicates.pick(self.source.accession(accession_no), self.tz)
            events = None if types is None else [BY_CODE[c] for c in types]
            result.counts = self.applier.apply(rows, events)
        except SourceError as exc:
            result.error = str(exc)
        except Exception as exc:
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("reports.sync_crashed", accession_no=accession_no)
            self.close()
        result.seconds = time.monotonic() - started
        return result

    def now(self) -> dt.datetime:
        """Now as naive local time in gateway.timezone, the way PACS times are kept."""
        return dt.datetime.now(self.tz).replace(tzinfo=None, microsecond=0)

    def watermark(self, event: EventType) -> dt.datetime | None:
        value = self.store.watermarks.get(watermark_name(event))
        parsed = parse_time(value, self.tz) if value else None
        return parsed.astimezone(self.tz).replace(tzinfo=None) if parsed else None

    # -- one type ------------------------------------------------------------------------
    def _sync_type(self, event: EventType, since: dt.datetime | None, end: dt.datetime,
                   manual: bool) -> TypeResult:
        start = since if since is not None else self._start(event, end)
        result = TypeResult(event.code, start, end)
        started = time.monotonic()
        try:
            for batch in self.source.window(event, start, end):
                batch = duplicates.pick(batch, self.tz)  # the view source did; HTTP not
                result.counts.add(self.applier.apply(batch, [event]))
        except SourceError as exc:
            result.error = str(exc)
            log.error("reports.sync_failed", type=event.code, error=str(exc),
                      rows_applied=result.counts.read)
        except Exception as exc:  # a bug or a driver surprise: the other types carry on
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("reports.sync_crashed", type=event.code)
            self.close()
        else:
            if not manual:
                mark = end.replace(tzinfo=self.tz).isoformat(timespec="seconds")
                self.store.watermarks.set(watermark_name(event), mark)
        result.seconds = time.monotonic() - started
        c = result.counts
        log.info("reports.synced", type=event.code, start=str(start), end=str(end),
                 read=c.read, new=c.new, changed=c.changed, unchanged=c.unchanged,
                 quarantined=c.quarantined, tasks=c.tasks, ok=result.error is None,
                 seconds=round(result.seconds, 3))
        return result

    def _start(self, event: EventType, end: dt.datetime) -> dt.datetime:
        mark = self.watermark(event)
        if mark is None:
            return end - dt.timedelta(seconds=self.reports.initial_lookback)
        # min(): a clock that went back must not leave a gap
        return min(mark, end) - dt.timedelta(seconds=self.reports.overlap)


def _summary(r: TypeResult) -> str:
    c = r.counts
    head = f"type {r.type}" if r.type else "accession"
    if r.error:
        return f"{head}: FAILED after {c.read} rows: {r.error}"
    return (f"{head}: {c.read} read, {c.new} new, {c.changed} changed, {c.unchanged} "
            f"unchanged, {c.quarantined} quarantined, {c.tasks} tasks")
