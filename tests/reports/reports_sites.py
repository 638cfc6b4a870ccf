"""One PACS database on each server the suite runs (SQLite file, PostgreSQL, MariaDB), the
same view in each, and a gateway whose reports go to the test cloud's report receiver."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reports_mariadb import MariaPacs
from reports_pg import PgPacs
from reports_support import Pacs, reports_config, view_reports

from dicomgate.app import App
from dicomgate.config import load
from tests.support import toml_table
from tests.support.engines import built_app

DATABASES = ("sqlite", "postgres", "mariadb")


@dataclass
class Site:
    """A PACS database: `add` inserts a row (`?` placeholders), `run` any SQL, `now_sql`
    is how the database writes "now" into a time column of this site's type."""

    name: str
    connection: str
    add: Callable[[str, tuple], None]
    run: Callable[[str], object]
    now_sql: str | None = None  # None: the PACS writes its local wall-clock time


def make_site(request, tmp_path: Path, db: str, ts: str | None = None,
              charset: str = "utf8mb4") -> Site:
    """`ts`: the time columns' type (each database's usual one when None)."""
    if db == "sqlite":
        pacs = Pacs(tmp_path / "pacs.db", ts=ts or "TEXT")
        return Site(db, f"Driver=SQLite3;Database={pacs.path}", pacs.run, pacs.run)
    if db == "postgres":
        # the server keeps UTC while the gateway is in Asia/Shanghai
        pg = PgPacs(request.getfixturevalue("postgres"), ts=ts or "TIMESTAMP", zone="UTC")
        now = "now()" if (ts or "").upper() == "TIMESTAMPTZ" else None
        return Site(db, pg.connection(UseDeclareFetch="1", Fetch="50"), pg.insert, pg.run,
                    now)
    maria = MariaPacs(request.getfixturevalue("mariadb"), charset, ts=ts or "DATETIME")
    now = "NOW()" if (ts or "").upper() == "TIMESTAMP NULL" else None
    return Site(db, maria.connection(), maria.insert, maria.run, now)


def cloud_app(tmp_path: Path, site: Site, cloud_url: str, view_extra: str = "",
              gateway_extra: str = "") -> App:
    """A gateway reading `site` and pushing reports to the cloud at `cloud_url`."""
    upstream = toml_table("upstream", dicomweb_url="http://127.0.0.1:9/dicom-web",
                          api_url=cloud_url)
    config = reports_config(tmp_path, view_reports(site.connection, view_extra), upstream)
    if gateway_extra:  # more [gateway] keys
        text = config.read_text().replace("[gateway]\n", f"[gateway]\n{gateway_extra}\n", 1)
        config.write_text(text)
    return built_app(load(config))


def push_reports(app: App, limit: int = 500) -> list[str]:
    """Run the due report pushes in this thread (images are not part of these tests)."""
    states = []
    for _ in range(limit):
        task = app.store.tasks.claim(["push_report"], app.pool.owner, 60)
        if task is None:
            break
        states.append(app.pool.run(task))
    return states
