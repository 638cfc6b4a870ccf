"""What an open console page costs the daemon: one poll of each page's JSON, against the
Prometheus scrape (`/metrics`) of the same daemon and state as the peer.

A state store is filled through the Store (exams of 30 days, today's with their studies,
instances, delivered uploads, report pushes), then `dicomgate run` serves it ([shim] and
[console] only, no peers, so nothing else runs). Each endpoint is fetched sequentially
ROUNDS times over loopback; the daemon's CPU time (utime + stime from /proc) is read before
and after, so the figure is the daemon's own work per request, not the client's.

    .venv/bin/python bench/console.py [--today 300,1500] [--rounds 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from dicomgate.sandbox.orthanc import free_port
from dicomgate.state import Store
from dicomgate.state.kinds import PushReport, Retrieve, Upload
from dicomgate.state.names import ExamState, InstanceState, StudyState

HOSPITAL = "H33010200001"
TOKEN = "bench-console-token-0123456789"
PER_EXAM = 40  # instances per study
HISTORY_DAYS = 30
# The overview is shared between open pages for OVERVIEW_TTL (1 s): measured both fresh
# (requests spaced past the TTL: what one open page costs) and shared (back to back).
ENDPOINTS = ("/console/api/overview (fresh)", "/console/api/overview (shared)",
             "/console/api/problems", "/console/api/exams", "/metrics", "/healthz")


def fill(store: Store, today: int) -> None:
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    t0 = time.time()
    with store.transaction():
        for day in range(HISTORY_DAYS):
            for n in range(today):
                when = (now - dt.timedelta(days=day, minutes=n % 600)).isoformat(
                    timespec="seconds") + "+08:00"  # now: Asia/Shanghai wall clock
                acc = f"B{day:02d}{n:06d}"
                uid = f"1.2.826.0.1.3680043.9.7777.{day}.{n}"
                exam_id = store.exams.insert(
                    hospital_id=HOSPITAL, accession_no=acc, state=ExamState.REPORTED,
                    study_uid=uid, exam_time=when, report_version=1, warnings=[],
                    record={"accessionNo": acc, "patientName": "测试患者", "modality": "CT",
                            "examItemName": "胸部CT平扫", "examTime": when})
                if day:
                    continue  # history: exams only (their instances were purged long ago)
                store.instances.ensure_study(uid, accession_no=acc, exam_id=exam_id)
                store.instances.set_study(uid, state=StudyState.COMPLETE, expected_count=PER_EXAM)
                sops = [f"{uid}.{i}" for i in range(PER_EXAM)]
                for sop in sops:
                    store.instances.record(sop_uid=sop, study_uid=uid, series_uid=uid + ".1",
                                           sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                                           transfer_syntax="1.2.840.10008.1.2.1",
                                           path=f"/nonexistent/{sop}.dcm", size=524_288,
                                           sha256="0" * 64, source="bench")
                delivered = sops if n % 10 else sops[:PER_EXAM // 2]  # 10 % still sending
                store.instances.set_state(delivered, InstanceState.DELIVERED)
                for task in (Retrieve(study_uid=uid, exam_id=exam_id), Upload(uid),
                             PushReport(exam_id, 1)):
                    store.tasks.enqueue(task, exam_id=exam_id, study_uid=uid)
    with sqlite3.connect(store.db.path) as conn:  # bench-only shortcuts, in plain SQL
        conn.execute("UPDATE tasks SET state='done', finished_at=updated_at")
        # first read when performed (the poller reads within minutes), not all at once now
        conn.execute("UPDATE exams SET created_at = strftime('%s', substr(exam_time, 1, 19)) "
                     "- 8 * 3600 + 300")
    print(f"  filled: {today * HISTORY_DAYS} exams, {today * PER_EXAM} instances today "
          f"({time.time() - t0:.1f} s)", flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(today: int, rounds: int) -> list[tuple[str, float, float, float, int]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    store = Store(tmp / "state" / "state.db")
    fill(store, today)
    store.close()
    port = free_port()
    cfg = tmp / "dicomgate.toml"
    cfg.write_text(f"""
[gateway]
hospital_id = "{HOSPITAL}"
state_dir = "{tmp / 'state'}"
[dicom]
ae_title = "DICOMGATE"
bind = "127.0.0.1"
port = {free_port()}
[shim]
bind = "127.0.0.1"
port = {port}
[console]
operator_token = "{TOKEN}"
[log]
level = "warning"
format = "json"
""", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "dicomgate.cli", "--config", str(cfg), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(base + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        out = []
        with requests.Session() as s:
            for label in ENDPOINTS:
                path = label.split(" ")[0]
                fresh = label.endswith("(fresh)")
                s.get(base + path, timeout=30)  # warm: connections, page cache
                wall = []
                n = min(rounds, 15) if fresh else rounds
                before = cpu_seconds(proc.pid)
                for _ in range(n):
                    if fresh:
                        time.sleep(1.1)  # past the shared answer's life
                    t = time.perf_counter()
                    r = s.get(base + path, timeout=30)
                    wall.append(time.perf_counter() - t)
                    assert r.status_code in (200, 503), (path, r.status_code)
                idle = 0.0
                if fresh:  # the daemon's own idle ticks while we slept: measured apart
                    t0 = cpu_seconds(proc.pid)
                    time.sleep(1.1 * n)
                    idle = cpu_seconds(proc.pid) - t0
                cpu = (cpu_seconds(proc.pid) - before - 2 * idle) / n
                out.append((label, statistics.median(wall) * 1000,
                            sorted(wall)[int(0.95 * (n - 1))] * 1000, cpu * 1000,
                            len(r.content)))
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--today", default="300,1500", help="exams per day, comma-separated")
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    for today in (int(x) for x in args.today.split(",")):
        print(f"\n{today} exams a day ({today * HISTORY_DAYS} in the store):", flush=True)
        rows = run(today, args.rounds)
        metrics_cpu = next(r[3] for r in rows if r[0] == "/metrics")
        print(f"  {'endpoint':<34}{'median ms':>10}{'p95 ms':>9}{'daemon CPU ms':>15}"
              f"{'bytes':>9}{'CPU vs /metrics':>17}")
        for path, med, p95, cpu, size in rows:
            print(f"  {path:<34}{med:>10.1f}{p95:>9.1f}{cpu:>15.1f}{size:>9}"
                  f"{cpu / metrics_cpu if metrics_cpu else 0:>16.2f}x")


if __name__ == "__main__":
    main()
