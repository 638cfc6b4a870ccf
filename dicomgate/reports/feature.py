"""Wire the report poller into the app: scheduled jobs (poll, view check, reconciliation),
a health check and a status section."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from ..app import ActionError, App
from ..config import Config
from . import reconcile, view_check
from .events import BY_CODE, POLL_ORDER
from .poller import POLL_ERRORS, Poller, watermark_name
from .source import Source, SourceError

log = structlog.get_logger("dicomgate.reports")
CHECK_EVERY = 86400.0  # the view check runs at start, then daily


def make_source(config: Config) -> Source:
    reports = config.reports
    assert reports is not None
    if reports.source == "view":
        from .view_source import ViewSource

        assert reports.view is not None
        return ViewSource(reports.view, config.gateway.timezone)
    from .http_source import HttpSource

    assert reports.http is not None
    return HttpSource(reports.http)


def make_poller(app: App) -> Poller:
    return Poller(app.config, app.store, lambda: make_source(app.config))


def run_check(app: App) -> view_check.CheckResult:
    """The view probe; the result is kept for health and status."""
    poller = make_poller(app)
    try:
        source = poller.source
        from .view_source import ViewSource

        assert isinstance(source, ViewSource)
        result = view_check.check_view(source, poller.applier.rules)
    finally:
        poller.close()
    app.store.facts.set(view_check.FACT, result.public())
    if result.ok:
        log.info("reports.view_checked", warnings=result.warnings,
                 time_columns=result.time_columns)
    else:
        log.error("reports.view_check_failed", problems=result.problems,
                  row_problems=result.row_problems, warnings=result.warnings)
    return result


def reconcile_recent(app: App, poller: Poller) -> reconcile.ReconcileResult:
    """The daemon's pass: [now - reconcile_lookback, now - overlap - poll interval)."""
    reports = app.config.reports
    assert reports is not None
    # a fresh source: the time formats are verified over the whole columns again, for this
    # pass and the polls after it (a row in another format may have appeared since)
    poller.close()
    now = poller.now()
    end = now - dt.timedelta(seconds=reports.overlap + reports.poll_interval)
    result = reconcile.reconcile(poller, end - dt.timedelta(
        seconds=reports.reconcile_lookback), end)
    app.store.facts.set(reconcile.FACT, result.public())
    return result


def setup(app: App) -> None:
    reports = app.config.reports
    if reports is None:
        return
    poller = make_poller(app)

    def poll() -> str:
        try:
            return poller.poll()
        finally:
            app.pool.wake()  # new tasks may be due

    def check() -> str:
        result = run_check(app)
        if result.problems:
            poller.close()  # the polls learn and verify the formats again: they stop too
        if not result.ok:
            raise SourceError("; ".join([*result.problems, *result.row_problems]))
        return f"view OK ({len(result.warnings)} warnings)"

    def reconcile_job() -> str:
        try:
            result = reconcile_recent(app, poller)
        finally:
            app.pool.wake()
        if result.errors:
            raise SourceError(reconcile.summary(result))
        return reconcile.summary(result)

    app.every("reports.poll", reports.poll_interval, poll, first_in=5.0)
    if reports.source == "view":
        app.every("reports.check", CHECK_EVERY, check, first_in=1.0)
    if reports.reconcile_interval > 0:
        app.every("reports.reconcile", reports.reconcile_interval, reconcile_job,
                  first_in=min(600.0, reports.reconcile_interval))
    app.add_health("reports", lambda: health(app))
    app.add_status("reports", lambda: status(app))
    app.add_action("reports.reread", lambda accession: reread(app, accession))
    app.add_action("reports.reconcile", lambda: reconcile_now(app))


def reconcile_now(app: App) -> str:
    """The daemon's reconciliation pass, run now (the console's button)."""
    poller = make_poller(app)
    try:
        result = reconcile_recent(app, poller)
    finally:
        poller.close()
        app.pool.wake()
    if result.errors:
        raise ActionError(reconcile.summary(result))
    return reconcile.summary(result)


def reread(app: App, accession: str) -> str:
    """Read one exam from the PACS again, whatever the watermarks say (what
    `dicomgate sync --once --accession ACC` does): a corrected row clears its quarantine."""
    poller = make_poller(app)
    try:
        result = poller.sync_accession(accession)
    finally:
        poller.close()
        app.pool.wake()
    if result.error:
        raise ActionError(f"could not read {accession} from the PACS: {result.error}")
    c = result.counts
    if not c.read:
        raise ActionError(f"the PACS has no row for accession number {accession}")
    return (f"read {c.read} row(s) of {accession}: {c.new} new, {c.changed} changed, "
            f"{c.unchanged} unchanged, {c.quarantined} quarantined, {c.tasks} task(s) queued")


def problems(app: App) -> list[str]:
    """What keeps rows from being read: the last view check and the last poll."""
    out = list((app.store.facts.get(view_check.FACT) or {}).get("problems") or [])
    for code, error in sorted((app.store.facts.get(POLL_ERRORS) or {}).items()):
        out.append(f"type {code} ({BY_CODE[int(code)].name}): {error}")
    return out


def health(app: App) -> str | None:
    found = problems(app)
    return "; ".join(found) if found else None


def status(app: App) -> dict[str, Any]:
    reports = app.config.reports
    assert reports is not None
    where = reports.view.name if reports.source == "view" and reports.view else \
        (reports.http.url if reports.http else None)
    check = app.store.facts.get(view_check.FACT) or {}
    last = app.store.facts.get(reconcile.FACT)
    return {
        "source": reports.source,
        "from": where,
        "problems": problems(app) or None,
        "watermarks": {f"type {e.code} ({e.name})": app.store.watermarks.get(watermark_name(e))
                       for e in POLL_ORDER},
        "view check": {"at": check.get("at"),
                       "row problems": check.get("row_problems") or None,
                       "warnings": len(check.get("warnings") or []),
                       "time formats": {k: v.get("format") for k, v in
                                        (check.get("time_columns") or {}).items()}}
        if check else None,
        "reconciliation": {"period": f"{last['start']} .. {last['end']}",
                           "checked": last["checked"], "missed": len(last["missed"]),
                           "repaired": len(last["repaired"]), "errors": last["errors"] or None}
        if last else None,
        "exams": app.store.exams.counts(),
    }


__all__ = ["SourceError", "make_poller", "run_check", "setup"]
