"""Receive benchmark: C-MOVE a synthetic study from Orthanc into dicomgate's Portal AET and,
in the same run, into DCMTK storescp (TCP_NODELAY=1); throughput, ratio, peak RSS.

    .venv/bin/python bench/receive.py                  # 200 x 512 KB (~105 MB), 3 rounds
    .venv/bin/python bench/receive.py --instances 2000 --rounds 1   # ~1 GB, for memory

Both receivers run as their own processes (dicomgate as `dicomgate run`), so the peak RSS
(VmHWM) is the receiver's alone. Everything stays on loopback in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dicomgate.config.model import DicomConfig, PacsConfig
from dicomgate.images.scu import PacsClient
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances

GW_AET, DCMTK_AET, PACS_AET = "DICOMGATE", "STORESCP", "HOSPPACS"


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"receiver exited early (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"receiver did not listen on {port}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_dicomgate(work: Path, port: int, pacs_port: int) -> subprocess.Popen:
    state = work / "gw-state"
    shutil.rmtree(state, ignore_errors=True)
    cfg = work / "gw.toml"
    cfg.write_text(f"""
[gateway]
hospital_id = "BENCH"
state_dir = "{state}"
[dicom]
ae_title = "{GW_AET}"
bind = "127.0.0.1"
port = {port}
min_free_disk = "1GB"
[pacs]
ae_title = "{PACS_AET}"
host = "127.0.0.1"
port = {pacs_port}
echo_interval = "1h"
[log]
level = "warning"
format = "json"
""")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from dicomgate.cli import "
                             "main; sys.exit(main())", "--config", str(cfg), "run"],
                            stdout=open(work / "gw.log", "ab"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc


def start_storescp(work: Path, port: int) -> subprocess.Popen:
    out = work / "storescp-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    proc = subprocess.Popen(["storescp", "-aet", DCMTK_AET, "-od", str(out), str(port)],
                            env=dict(os.environ, TCP_NODELAY="1"),
                            stdout=open(work / "storescp.log", "ab"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def timed_move(pacs_port: int, dest_aet: str, study_uid: str) -> float:
    client = PacsClient(DicomConfig(ae_title=dest_aet),
                        PacsConfig(PACS_AET, "127.0.0.1", pacs_port, timeout=30,
                                   move_timeout=1800))
    t0 = time.perf_counter()
    result = client.move("STUDY", {"StudyInstanceUID": study_uid})
    seconds = time.perf_counter() - t0
    if result.failed or result.status != 0:
        raise SystemExit(f"C-MOVE to {dest_aet}: status 0x{result.status:04X}, "
                         f"{result.failed} failed")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    if shutil.which("storescp") is None:
        raise SystemExit("storescp not found: apt-get install dcmtk")
    work = Path(tempfile.mkdtemp(prefix="dicomgate-bench-"))
    gw_port, dcmtk_port = free_port(), free_port()
    orthanc = Orthanc(work / "pacs", PACS_AET, modalities={
        "gw": (GW_AET, "127.0.0.1", gw_port), "dcmtk": (DCMTK_AET, "127.0.0.1", dcmtk_port)})
    orthanc.start()
    try:
        spec = StudySpec(accession="BENCH1")
        total = 0
        t0 = time.perf_counter()
        per = 100
        for start in range(0, args.instances, per):  # generate and upload in slices
            n = min(per, args.instances - start)
            for d in ct_instances(spec, series=1, per_series=n, rows=args.size,
                                  cols=args.size, seed=start):
                orthanc.upload(d)
                total += len(d)
        print(f"study: {args.instances} instances, {total / 1e6:.1f} MB in Orthanc "
              f"(loaded in {time.perf_counter() - t0:.1f} s)")
        rows = []
        for r in range(args.rounds):
            gw = start_dicomgate(work, gw_port, orthanc.dicom_port)
            try:
                t_gw = timed_move(orthanc.dicom_port, GW_AET, spec.study_uid)
                rss_gw = peak_rss_mb(gw.pid)
            finally:
                stop(gw)
            received = len(list((work / "gw-state" / "spool").rglob("*.dcm")))
            dc = start_storescp(work, dcmtk_port)
            try:
                t_dc = timed_move(orthanc.dicom_port, DCMTK_AET, spec.study_uid)
                rss_dc = peak_rss_mb(dc.pid)
            finally:
                stop(dc)
            got_dc = len(list((work / "storescp-out").iterdir()))
            if received != args.instances or got_dc != args.instances:
                raise SystemExit(f"round {r + 1}: dicomgate stored {received}, storescp "
                                 f"{got_dc} of {args.instances}")
            rows.append((t_gw, t_dc, rss_gw, rss_dc))
            print(f"round {r + 1}: dicomgate {total / t_gw / 1e6:7.1f} MB/s "
                  f"({t_gw:.2f} s, peak RSS {rss_gw:.0f} MB) | storescp "
                  f"{total / t_dc / 1e6:7.1f} MB/s ({t_dc:.2f} s, peak RSS {rss_dc:.0f} MB) "
                  f"| ratio {t_dc / t_gw:.2f}x")
        t_gw = statistics.median(r[0] for r in rows)
        t_dc = statistics.median(r[1] for r in rows)
        print(f"median: dicomgate {total / t_gw / 1e6:.1f} MB/s "
              f"({args.instances / t_gw:.0f} inst/s), storescp {total / t_dc / 1e6:.1f} MB/s "
              f"({args.instances / t_dc:.0f} inst/s), dicomgate/storescp throughput "
              f"{t_dc / t_gw:.2f}x; peak RSS dicomgate {max(r[2] for r in rows):.0f} MB, "
              f"storescp {max(r[3] for r in rows):.0f} MB")
    finally:
        orthanc.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
