"""Task claims on both engines: SQLite (one host), PostgreSQL with one node, and PostgreSQL
with two nodes claiming the same queue at once (each node a Store of its own, 2 threads
each), plus the store round trips one task costs (enqueue, claim, complete).

    .venv/bin/python bench/claims.py [--tasks 2000]

Starts its own throwaway PostgreSQL (initdb on a free loopback port) and removes it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicomgate.state import PgLocation, Store  # noqa: E402
from dicomgate.state.kinds import PushReport  # noqa: E402
from tests.support.pg_server import PgServer  # noqa: E402


def run(stores: list[Store], tasks: int, threads_per_store: int = 2) -> dict[str, float]:
    for i in range(tasks):
        stores[0].tasks.enqueue(PushReport(i, 1))
    lat: list[float] = []
    lock = threading.Lock()

    def worker(store: Store, name: str) -> None:
        mine = []
        for _ in range(tasks * 2):  # bounded
            t0 = time.perf_counter()
            t = store.tasks.claim(["push_report"], name, lease=60)
            if t is None:
                break
            mine.append(time.perf_counter() - t0)
            store.tasks.complete(t.id, name)
        with lock:
            lat.extend(mine)

    ths = [threading.Thread(target=worker, args=(s, f"n{i}:1:{j}"))
           for i, s in enumerate(stores) for j in range(threads_per_store)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    assert len(lat) == tasks, (len(lat), tasks)  # each task claimed exactly once
    lat.sort()
    return {"tasks_per_s": tasks / wall, "p50_ms": statistics.median(lat) * 1000,
            "p95_ms": lat[int(len(lat) * 0.95)] * 1000}


def round_trips(url: str, tmp: Path) -> float:
    """Client round trips to PostgreSQL (statements, BEGIN and COMMIT included) for one
    task's enqueue + claim + complete, counted at the engine's one execute."""
    from dicomgate.state import pg

    s = Store(PgLocation(url, tmp / "rt", node="n0"))
    count = [0]
    real = pg.Connection.execute

    def counted(self, sql, params=()):
        count[0] += 1
        return real(self, sql, params)

    pg.Connection.execute = counted
    n = 200
    try:
        for i in range(n):
            s.tasks.enqueue(PushReport(10**6 + i, 1))
            t = s.tasks.claim(["push_report"], "n0:1:1", lease=60)
            s.tasks.complete(t.id, "n0:1:1")
    finally:
        pg.Connection.execute = real
        s.close()
    return count[0] / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-claims-"))
    server = PgServer()
    try:
        rows = []
        sq = Store(tmp / "sqlite" / "state.db")
        rows.append(("SQLite, 1 node x 2 threads", run([sq], args.tasks)))
        sq.close()
        url = server.new_database()
        one = Store(PgLocation(url, tmp / "a", node="n0"))
        rows.append(("PostgreSQL, 1 node x 2 threads", run([one], args.tasks)))
        one.close()
        url = server.new_database()
        two = [Store(PgLocation(url, tmp / n, node=n)) for n in ("n0", "n1")]
        rows.append(("PostgreSQL, 2 nodes x 2 threads", run(two, args.tasks)))
        for s in two:
            s.close()
        rt = round_trips(server.new_database(), tmp)
        print("| setup | tasks/s (claim+complete) | claim p50 | claim p95 |")
        print("|---|---|---|---|")
        for name, r in rows:
            print(f"| {name} | {r['tasks_per_s']:.0f} | {r['p50_ms']:.2f} ms | "
                  f"{r['p95_ms']:.2f} ms |")
        print(f"\nPostgreSQL round trips per task (enqueue + claim + complete): {rt:.1f}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
