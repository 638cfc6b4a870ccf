"""Benchmark: `dicomgate sync --once` over a SQLite ODBC view of N exams.

Half the exams carry an audited report, so types 1 and 3 both do work (exams,
report versions, retrieve and push_report tasks). Each measured run is a fresh
`dicomgate` process: wall time, rows/s and its peak RSS. The peer is the ODBC read
alone: the same view, same driver, same fetchmany batches, in a bare pyodbc loop.

    .venv/bin/python bench/sync.py              # 20,000 and 100,000 rows
    .venv/bin/python bench/sync.py --rows 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reports"))
from reports_pacs import COLUMNS, TABLES, VIEW  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
BATCH = 500
# StepAPI=1: the SQLite driver steps through rows instead of buffering the whole result
DRIVER_OPTS = "StepAPI=1"


def build_pacs(path: Path, rows: int) -> None:
    now = dt.datetime.now(TZ).replace(tzinfo=None, microsecond=0)
    c = sqlite3.connect(path)
    c.executescript(TABLES.format(ts="TEXT") + VIEW.format(acc="e.EXAM_NO"))

    def t(seconds: int) -> str:
        return (now - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")

    span = 20 * 3600  # all exams inside the first-run lookback (1 day)
    exams = ((f"ACC{i:07d}", "H33010200001", f"1.2.826.0.1.3680043.9.{i}", f"P{i}", "张三",
              "11010519491231002X", "1", "45岁", "1", "02", "CT", None, "CT001", "胸部CT平扫",
              t(span - i * span // rows + 60), None) for i in range(rows))
    c.executemany(f"INSERT INTO RIS_EXAM VALUES ({','.join('?' * 16)})", exams)
    reports = ((f"ACC{i:07d}", "双肺纹理清晰。" * 10, "未见明显异常。", "1", "李医生", "王主任",
                t(span - i * span // rows), t(span - i * span // rows), None)
               for i in range(0, rows, 2))
    c.executemany(f"INSERT INTO RIS_REPORT VALUES ({','.join('?' * 9)})", reports)
    c.commit()
    c.close()


def write_config(tmp: Path, db: Path) -> Path:
    columns = "\n".join(f'{k} = "{v}"' for k, v in COLUMNS.items())
    path = tmp / "dicomgate.toml"
    path.write_text(f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp / 'state'}"
[dicom]
ae_title = "DICOMGATE"
[pacs]
ae_title = "HOSPPACS"
host = "127.0.0.1"
[reports]
source = "view"
initial_lookback = "1d"
[reports.view]
connection = "Driver=SQLite3;Database={db};{DRIVER_OPTS}"
batch_size = {BATCH}
[reports.view.columns]
{columns}
[log]
level = "warning"
""", encoding="utf-8")
    return path


def run_child(argv: list[str]) -> tuple[float, int, str, float]:
    """Wall seconds, this child's own peak RSS (KiB, from wait4), its stdout, its CPU
    seconds (user + system, from wait4: steadier than wall time on a loaded machine)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:3])}... exited {proc.returncode}")
        out.seek(0)
        return (seconds, usage.ru_maxrss, out.read().decode(),
                usage.ru_utime + usage.ru_stime)


PEER = """
import pyodbc, sys
conn = pyodbc.connect(sys.argv[1], autocommit=True, readonly=True)
n = 0
for where in ("EXAM_DATE", "AUDIT_DATE", "MODIFY_DATE", "REFUND_DATE"):
    cur = conn.cursor()
    cur.execute(f'SELECT * FROM View_Pacs_Text_Info WHERE {where} >= ? AND {where} < ?',
                sys.argv[2], sys.argv[3])
    while True:
        rows = cur.fetchmany(BATCH)
        if not rows:
            break
        n += len(rows)
print(n)
""".replace("BATCH", str(BATCH))


def bench(rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dicomgate-bench-") as d:
        tmp = Path(d)
        db = tmp / "pacs.db"
        build_pacs(db, rows)
        config = write_config(tmp, db)
        exe = [str(Path(sys.executable).parent / "dicomgate"), "--config", str(config)]
        now = dt.datetime.now(TZ).replace(tzinfo=None)
        window = [(now - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
                  now.strftime("%Y-%m-%d %H:%M:%S")]
        peer_s, peer_rss, peer_out, peer_cpu = run_child(
            [sys.executable, "-c", PEER, f"Driver=SQLite3;Database={db};{DRIVER_OPTS}", *window])
        first_s, first_rss, out, first_cpu = run_child([*exe, "sync", "--once", "--json"])
        read = sum(r["read"] for r in json.loads(out))
        again_s, again_rss, out2, again_cpu = run_child([*exe, "sync", "--once", "--json"])
        again = sum(r["read"] for r in json.loads(out2))
        assert int(peer_out) == read, (peer_out, read)
        return {"rows": rows, "read": read, "peer_s": peer_s, "first_s": first_s,
                "again_s": again_s, "again": again, "peer_rss": peer_rss,
                "first_rss": first_rss, "again_rss": again_rss, "peer_cpu": peer_cpu,
                "first_cpu": first_cpu, "again_cpu": again_cpu}


def _rate(r: dict, key: str) -> str:
    return f"{r['read'] / r[key]:,.0f} rows/s ({r[key]:.2f} s)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, action="append")
    args = p.parse_args()
    print("| exams | rows read | ODBC read alone (peer) | sync --once, first | "
          "next poll (overlap re-read) | first sync time ÷ peer time | "
          "peak RSS peer / first / re-read | CPU s peer / first / re-read |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in args.rows or [20_000, 100_000]:
        r = bench(rows)
        print(f"| {rows:,} | {r['read']:,} | {_rate(r, 'peer_s')} | {_rate(r, 'first_s')} | "
              f"{r['again']:,} rows in {r['again_s']:.2f} s | {r['first_s'] / r['peer_s']:.1f}× | "
              f"{r['peer_rss'] // 1024} / {r['first_rss'] // 1024} / "
              f"{r['again_rss'] // 1024} MiB | {r['peer_cpu']:.2f} / {r['first_cpu']:.2f} / "
              f"{r['again_cpu']:.2f} |", flush=True)
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite3 ODBC driver, "
          f"batch_size {BATCH}, {DRIVER_OPTS}")


if __name__ == "__main__":
    main()
