"""Wire the report poller into the app: a scheduled job and a status section."""

from __future__ import annotations

from typing import Any

from ..app import ActionError, App
from ..config import Config
from .events import POLL_ORDER
from .poller import Poller, watermark_name
from .source import Source, SourceError


def make_source(config: Config) -> Source:
    reports = config.reports
    assert reports is not None
    if reports.source == "view":
        from .view_source import ViewSource

        assert reports.view is not None
        return ViewSource(reports.view)
    from .http_source import HttpSource

    assert reports.http is not None
    return HttpSource(reports.http)


def make_poller(app: App) -> Poller:
    return Poller(app.config, app.store, lambda: make_source(app.config))


def setup(app: App) -> None:
    if app.config.reports is None:
        return
    poller = make_poller(app)

    def poll() -> str:
        try:
            return poller.poll()
        finally:
            app.pool.wake()  # new tasks may be due

    app.every("reports.poll", app.config.reports.poll_interval, poll, first_in=5.0)
    app.add_status("reports", lambda: status(app))
    app.add_action("reports.reread", lambda accession: reread(app, accession))


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


def status(app: App) -> dict[str, Any]:
    reports = app.config.reports
    assert reports is not None
    where = reports.view.name if reports.source == "view" and reports.view else \
        (reports.http.url if reports.http else None)
    return {
        "source": reports.source,
        "from": where,
        "watermarks": {f"type {e.code} ({e.name})": app.store.watermarks.get(watermark_name(e))
                       for e in POLL_ORDER},
        "exams": app.store.exams.counts(),
    }


__all__ = ["SourceError", "make_poller", "setup"]
