"""Backlog on two nodes: the backlog of `bench/backlog.py` (dozens of studies appear in the
report view at once) worked by one `dicomgate run` and by two sharing a PostgreSQL store, in
the same run, against the same Orthanc PACS.

    .venv/bin/python bench/backlog_nodes.py                  # 40 studies x 6 CT 256x256
    .venv/bin/python bench/backlog_nodes.py --studies 60 --repeat 2

Set-ups, each with a fresh cloud (Orthanc DICOMweb + the reference cloud API):
 (1) SQLite, one node (the embedded default: the reference);
 (2) PostgreSQL, one node;
 (3) PostgreSQL, two nodes (each its own state dir, AE title and port; same per-node
     settings as the one node, so two nodes have twice the workers).
Done when the cloud holds every instance and every report. Reported: wall time from the
rows' appearance, studies/s, each node's share of the tasks done (from its log's
`task.done`), CPU seconds of the nodes (with their Portal AET children) and of PostgreSQL
over that window, and PostgreSQL's work per study over it from `pg_stat_statements`:
write transactions (COMMITs) and statements (every client round trip, BEGIN and COMMIT
included), heartbeats, claims and polls counted too.

Starts its own throwaway PostgreSQL (fsync off, as the tests') and removes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backlog import (  # noqa: E402
    DICOMGATE,
    HOSPITAL,
    TZ,
    count,
    cpu_seconds,
    make_studies,
    peer_sections,
    started,
    view_row,
    wait_until,
)
from receive import children  # noqa: E402

from dicomgate.sandbox.cloud_api import CloudApi  # noqa: E402
from dicomgate.sandbox.hospital import create_view_db  # noqa: E402
from dicomgate.sandbox.orthanc import Orthanc, free_port  # noqa: E402
from tests.support.pg_server import PgServer  # noqa: E402


def node_config(work: Path, name: str, aet: str, port: int, pacs: Orthanc, cloud: Orthanc,
                api: CloudApi, connection: str, url: str | None, args) -> str:
    state = f'[state]\nurl = "{url}"\n' if url else ""
    return f"""[gateway]
hospital_id = "{HOSPITAL}"
state_dir = "{work / name / 'state'}"
timezone = "{TZ}"
node_name = "{name}"
{state}[dicom]
ae_title = "{aet}"
bind = "127.0.0.1"
port = {port}
min_free_disk = "100MB"
""" + peer_sections(pacs, cloud, api, connection, args)


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds so far of these processes and their children (a process gone: 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid) + tree_cpu(children(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Db:
    """The PostgreSQL store as the bench reads it (from the `postgres` database, so the
    reading is not counted in the store's own figures)."""

    def __init__(self, server: PgServer, url: str):
        self.server, self.url, self.name = server, url, url.rsplit("/", 1)[1]

    def one(self, sql: str, params: tuple = (), db: str | None = None):
        import psycopg

        with psycopg.connect(self.url if db is None else self.server.url(db),
                             autocommit=True) as c:
            return c.execute(sql, params).fetchone()

    def counters(self) -> tuple[int, int]:
        """(COMMITs, statements) the store's database ran so far, from pg_stat_statements
        (exact at once; pg_stat_database flushes its counts up to 10 s late)."""
        commits, calls = self.one(
            "SELECT COALESCE(SUM(calls) FILTER (WHERE query ILIKE 'COMMIT%%'), 0), "
            "COALESCE(SUM(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname=%s", (self.name,), db="postgres")
        return int(commits), int(calls)

    def statements(self) -> dict[str, int]:
        """Calls so far per statement text (normalised by pg_stat_statements)."""
        import psycopg

        with psycopg.connect(self.server.url(), autocommit=True) as c:
            rows = c.execute("SELECT query, SUM(calls) FROM pg_stat_statements s JOIN "
                             "pg_database d ON d.oid = s.dbid WHERE d.datname=%s "
                             "GROUP BY query", (self.name,)).fetchall()
        return {q: int(n) for q, n in rows}

    def postmaster(self) -> int:
        pid = self.one("SELECT pg_backend_pid()")[0]
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def polled(state_db: Path | None, db: Db | None, nodes: int) -> bool:
    """The leader's first view poll ran (and, two nodes, both have beaten)."""
    try:
        if db is not None:
            row = db.one("SELECT runs FROM job_runs WHERE name='reports.poll'")
            beats = db.one("SELECT COUNT(*) FROM nodes")[0]
            return bool(row and row[0] >= 1 and beats >= nodes)
        import sqlite3

        assert state_db is not None
        if not state_db.exists():
            return False
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=1) as c:
            row = c.execute("SELECT runs FROM job_runs WHERE name='reports.poll'").fetchone()
        return bool(row and row[0] >= 1)
    except Exception:  # not created yet
        return False


def tasks_done(log: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == "task.done":
                out[e.get("kind", "?")] = out.get(e.get("kind", "?"), 0) + 1
    return out


def leg(work: Path, pacs: Orthanc, studies, n: int, names: list[str], db: Db | None,
        args) -> dict[str, object]:
    cloud = started(lambda: Orthanc(work / "cloud", "CLOUD", dicomweb=True))
    api = CloudApi().start()
    view_db = work / "hospital" / "pacs.db"
    connection = create_view_db(view_db, [])
    procs, logs = [], []
    try:
        for i, name in enumerate(names):
            aet, port = f"DGATE_{i}", free_port()
            pacs.add_modality(f"dgate{i}", aet, "127.0.0.1", port)
            (work / name).mkdir(parents=True, exist_ok=True)
            config = work / name / "dicomgate.toml"
            config.write_text(node_config(work, name, aet, port, pacs, cloud, api, connection,
                                          db.url if db else None, args))
            logs.append(work / name / "daemon.log")
            with open(logs[-1], "ab") as out:
                procs.append(subprocess.Popen([DICOMGATE, "--config", str(config), "run"],
                                              stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        state_db = work / names[0] / "state" / "state.db"
        wait_until("the first report poll", lambda: polled(state_db, db, len(names)), 90)
        local = dt.datetime.now(ZoneInfo(TZ)).replace(tzinfo=None) - dt.timedelta(minutes=2)
        rows = [view_row(s, local.strftime("%Y-%m-%d %H:%M:%S")) for s in studies]
        before = db.counters() if db else None
        texts = db.statements() if db else {}
        pids = [p.pid for p in procs]
        pg_pids = [db.postmaster()] if db else []
        cpu0, pg_cpu0 = tree_cpu(pids), tree_cpu(pg_pids)
        t0 = time.monotonic()
        create_view_db(view_db, rows)  # one transaction: every exam appears at once
        wait_until("the cloud to hold every instance", lambda: count(cloud) >= n,
                   args.timeout)
        t1 = wait_until("every report", lambda: len(api.accessions()) >= len(studies),
                        args.timeout)
        out: dict[str, object] = {"wall_s": t1 - t0, "studies_per_s": len(studies) / (t1 - t0),
                                  "dicomgate_cpu_s": tree_cpu(pids) - cpu0,
                                  "postgres_cpu_s": tree_cpu(pg_pids) - pg_cpu0}
        if db is not None and before is not None:
            after = db.counters()
            out["xact_per_study"] = (after[0] - before[0]) / len(studies)
            out["statements_per_study"] = (after[1] - before[1]) / len(studies)
            now = db.statements()
            top = sorted(((n - texts.get(q, 0), q) for q, n in now.items()), reverse=True)
            out["top_statements"] = [(round(n / len(studies), 1), " ".join(q.split())[:90])
                                     for n, q in top[:args.top]]
        time.sleep(0.5)  # the last task.done lines
        out["tasks_done"] = {name: tasks_done(log) for name, log in zip(names, logs, strict=True)}
        return out
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for i in range(len(names)):
            pacs.session.delete(f"{pacs.url}/modalities/dgate{i}", timeout=30)
        api.stop()
        cloud.stop()


def with_statements(server: PgServer) -> None:
    """Load pg_stat_statements (a restart) so statements can be counted per database."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    server.stop()
    server.start()
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def share(done: dict[str, dict[str, int]]) -> str:
    totals = {name: sum(k.values()) for name, k in done.items()}
    all_ = sum(totals.values()) or 1
    return ", ".join(f"{name} {t} ({100 * t / all_:.0f}%: " + " ".join(
        f"{k} {v}" for k, v in sorted(done[name].items())) + ")"
        for name, t in totals.items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--per-study", type=int, default=6)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4, help="tasks.workers per node")
    p.add_argument("--concurrency", type=int, default=4, help="upstream.concurrency per node")
    p.add_argument("--max-associations", type=int, default=2,
                   help="pacs.max_associations per node")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--top", type=int, default=8, help="statements listed per PostgreSQL run")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    args.day = "small"
    work = Path(tempfile.mkdtemp(prefix="dicomgate-backlog-nodes-"))
    studies = make_studies(args)
    n = sum(len(s.files) for s in studies)
    server = PgServer()
    pacs = started(lambda: Orthanc(work / "pacs", "PACS"))
    results: dict[str, list[dict]] = {}
    try:
        with_statements(server)
        for s in studies:
            for f in s.files:
                pacs.upload(f)
        print(f"{len(studies)} studies, {n} instances; work dir {work}", flush=True)
        setups = [("SQLite, 1 node", ["gw-a"], False), ("PostgreSQL, 1 node", ["gw-a"], True),
                  ("PostgreSQL, 2 nodes", ["gw-a", "gw-b"], True)]
        for r in range(args.repeat):
            for label, names, pg in setups:
                db = Db(server, server.new_database()) if pg else None
                out = leg(work / f"run{r}" / label.replace(", ", "-").replace(" ", ""), pacs,
                          studies, n, names, db, args)
                results.setdefault(label, []).append(out)
                extra = (f", {out['xact_per_study']:.0f} COMMITs and "
                         f"{out['statements_per_study']:.0f} statements per study"
                         if pg else "")
                print(f"{label}: {out['wall_s']:.2f} s, {out['studies_per_s']:.2f} studies/s"
                      f"{extra}; CPU dicomgate {out['dicomgate_cpu_s']:.1f} s, PostgreSQL "
                      f"{out['postgres_cpu_s']:.1f} s; tasks done: {share(out['tasks_done'])}",
                      flush=True)
                for per, text in out.get("top_statements", []):
                    print(f"    {per:6.1f}/study  {text}", flush=True)
    finally:
        pacs.stop()
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| set-up | wall s (median; runs) | studies/s | CPU s dicomgate + PostgreSQL | "
          "PG COMMITs / study | PG statements / study |")
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        med = statistics.median(x["wall_s"] for x in runs)
        xa = [x["xact_per_study"] for x in runs if "xact_per_study" in x]
        st = [x["statements_per_study"] for x in runs if "statements_per_study" in x]
        walls = ", ".join(f"{x['wall_s']:.1f}" for x in runs)
        xact = f"{statistics.median(xa):.0f}" if xa else "–"
        stmt = f"{statistics.median(st):.0f}" if st else "–"
        cpu = (f"{statistics.median(x['dicomgate_cpu_s'] for x in runs):.1f} + "
               f"{statistics.median(x['postgres_cpu_s'] for x in runs):.1f}")
        print(f"| {label} | {med:.1f} ({walls}) | {len(studies) / med:.2f} | {cpu} | {xact} | "
              f"{stmt} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    sys.exit(main())
