"""Receive benchmark: C-MOVE a synthetic study from Orthanc into dicomgate's Portal AET and,
in the same run, into DCMTK storescp (TCP_NODELAY=1); throughput, ratio, CPU seconds, peak RSS.

    .venv/bin/python bench/receive.py                  # 200 x 512 KB (~105 MB), 3 rounds
    .venv/bin/python bench/receive.py --instances 2000 --rounds 1   # ~1 GB, for memory
    .venv/bin/python bench/receive.py --pdu 131072    # Orthanc and storescp at 128 KB PDUs
    .venv/bin/python bench/receive.py --rounds 1 --profile /tmp/prof   # py-spy (pip install
                                                       # py-spy): where the Portal AET's time goes

Before/after in the same run: `--baseline DIR` also runs `dicomgate run` from an older
source tree (`git archive <rev> dicomgate | tar -x -C DIR`) in each round. `--bare` adds
bench/bare_scp.py (pynetdicom with dicomgate's settings and a no-op handler): the ceiling.

Both receivers run as their own processes (dicomgate as `dicomgate run`), so the peak RSS
(VmHWM) is the receiver's alone. Everything stays on loopback in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
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
    """Peak RSS of the process plus its children (the daemon's SCP runs in one): a sum
    of peaks, so an upper bound."""
    total = 0.0
    for p in [pid, *children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total or float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of the process and its children so far."""
    total = 0
    for p in [pid, *children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in f.read_text().split()]
    return out


def start_dicomgate(work: Path, port: int, pacs_port: int, source: Path | None = None,
                    extra: list[str] | None = None, settle: float = 0.0) -> subprocess.Popen:
    """`dicomgate run` as the receiver; `extra`: more [dicom] lines; `settle`: seconds to
    give every SCP process time to listen (with dicom.scp_processes > 1)."""
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
{chr(10).join(extra or [])}
[pacs]
ae_title = "{PACS_AET}"
host = "127.0.0.1"
port = {pacs_port}
echo_interval = "1h"
[log]
level = "warning"
format = "json"
""")
    env = dict(os.environ, PYTHONPATH=str(source)) if source else None
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from dicomgate.cli import "
                             "main; sys.exit(main())", "--config", str(cfg), "run"],
                            stdout=open(work / "gw.log", "ab"), stderr=subprocess.STDOUT,
                            cwd=work, env=env)  # cwd: import the tree asked for, not ./
    wait_port(port, proc)
    time.sleep(settle)
    return proc


def start_storescp(work: Path, port: int, pdu: int | None = None,
                   fork: bool = False) -> subprocess.Popen:
    out = work / "storescp-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    pdu_opt = ["--max-pdu", str(pdu)] if pdu else []
    fork_opt = ["--fork"] if fork else []
    proc = subprocess.Popen(["storescp", *fork_opt, "-aet", DCMTK_AET, *pdu_opt, "-od", str(out),
                             str(port)],
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


def receive_gw(work: Path, gw_port: int, orthanc: Orthanc, study_uid: str, instances: int,
               source: Path | None, profile: Path | None = None) -> tuple[float, float, float]:
    gw = start_dicomgate(work, gw_port, orthanc.dicom_port, source)
    spy = start_profile(gw.pid, profile) if profile else None
    try:
        cpu = cpu_seconds(gw.pid)
        seconds = timed_move(orthanc.dicom_port, GW_AET, study_uid)
        rss = peak_rss_mb(gw.pid)
        cpu = cpu_seconds(gw.pid) - cpu
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        stop(gw)
    received = len(list((work / "gw-state" / "spool").rglob("*.dcm")))
    if received != instances:
        raise SystemExit(f"dicomgate ({source or 'this tree'}) stored {received} of {instances}")
    return seconds, rss, cpu


def start_profile(daemon_pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the Portal AET process (the daemon's child) into `out`, collapsed
    stacks per thread, only the thread holding the GIL (the process is GIL-bound; py-spy's
    idle detection does not tell a thread waiting in select from one running here)."""
    scp = children(daemon_pid)
    if len(scp) != 1:
        raise SystemExit(f"expected one Portal AET process under {daemon_pid}, found {scp}")
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(scp[0]), "--rate", "1000",
                            "--format", "raw", "--threads", "--nonblocking", "--gil",
                            "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return spy


def receive_bare(work: Path, port: int, orthanc: Orthanc, study_uid: str
                 ) -> tuple[float, float, float]:
    script = Path(__file__).with_name("bare_scp.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port), GW_AET,
                             str(work / "bare-spool")],
                            stdout=open(work / "bare.log", "ab"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    try:
        cpu = cpu_seconds(proc.pid)
        seconds = timed_move(orthanc.dicom_port, GW_AET, study_uid)  # checks every status
        rss = peak_rss_mb(proc.pid)
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        stop(proc)
    return seconds, rss, cpu


def receive_dcmtk(work: Path, port: int, orthanc: Orthanc, study_uid: str, instances: int,
                  pdu: int | None) -> tuple[float, float, float]:
    dc = start_storescp(work, port, pdu)
    try:
        cpu = cpu_seconds(dc.pid)
        seconds = timed_move(orthanc.dicom_port, DCMTK_AET, study_uid)
        rss = peak_rss_mb(dc.pid)
        cpu = cpu_seconds(dc.pid) - cpu
    finally:
        stop(dc)
    got = len(list((work / "storescp-out").iterdir()))
    if got != instances:
        raise SystemExit(f"storescp stored {got} of {instances}")
    return seconds, rss, cpu


def load_study(orthanc: Orthanc, spec: StudySpec, instances: int, size: int) -> int:
    total, t0, per = 0, time.perf_counter(), 100
    for start in range(0, instances, per):  # generate and upload in slices
        n = min(per, instances - start)
        for d in ct_instances(spec, series=1, per_series=n, rows=size, cols=size, seed=start):
            orthanc.upload(d)
            total += len(d)
    print(f"study: {instances} instances, {total / 1e6:.1f} MB in Orthanc "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pdu", type=int, default=None,
                    help="MaximumPduLength of Orthanc and --max-pdu of storescp (4096-131072; "
                         "default: both at their default, 16384)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a source tree holding an older dicomgate/ to run in the same rounds")
    ap.add_argument("--bare", action="store_true",
                    help="also run pynetdicom alone with a no-op handler (the ceiling)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write py-spy collapsed stacks of this tree's Portal AET process to "
                         "PROFILE.roundN (needs py-spy on PATH)")
    args = ap.parse_args()
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile: py-spy not found (pip install py-spy)")
    if shutil.which("storescp") is None:
        raise SystemExit("storescp not found: apt-get install dcmtk")
    if args.baseline and not (args.baseline / "dicomgate" / "cli").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: no dicomgate/ package there")
    work = Path(tempfile.mkdtemp(prefix="dicomgate-bench-"))
    gw_port, dcmtk_port = free_port(), free_port()
    orthanc = Orthanc(work / "pacs", PACS_AET, modalities={
        "gw": (GW_AET, "127.0.0.1", gw_port), "dcmtk": (DCMTK_AET, "127.0.0.1", dcmtk_port)},
        extra={"MaximumPduLength": args.pdu} if args.pdu else None)
    orthanc.start()
    try:
        spec = StudySpec(accession="BENCH1")
        total = load_study(orthanc, spec, args.instances, args.size)
        names = (["dicomgate"] + (["baseline"] if args.baseline else [])
                 + (["bare"] if args.bare else []) + ["storescp"])
        rows: list[dict[str, tuple[float, float, float]]] = []
        for r in range(args.rounds):
            prof = args.profile.with_suffix(f".round{r + 1}") if args.profile else None
            row = {"dicomgate": receive_gw(work, gw_port, orthanc, spec.study_uid,
                                           args.instances, None, prof)}
            if args.baseline:
                row["baseline"] = receive_gw(work, gw_port, orthanc, spec.study_uid,
                                             args.instances, args.baseline.resolve())
            if args.bare:
                row["bare"] = receive_bare(work, gw_port, orthanc, spec.study_uid)
            row["storescp"] = receive_dcmtk(work, dcmtk_port, orthanc, spec.study_uid,
                                            args.instances, args.pdu)
            rows.append(row)
            dc = row["storescp"][0]
            print(f"round {r + 1}: " + " | ".join(
                f"{n} {total / row[n][0] / 1e6:6.1f} MB/s ({row[n][0]:.2f} s, "
                f"CPU {row[n][2]:.2f} s, RSS {row[n][1]:.0f} MB, {dc / row[n][0]:.2f}x)"
                for n in names))
        med = {n: statistics.median(row[n][0] for row in rows) for n in names}
        dc = med["storescp"]
        print("median: " + ", ".join(
            f"{n} {total / med[n] / 1e6:.1f} MB/s ({args.instances / med[n]:.0f} inst/s, "
            f"CPU {statistics.median(row[n][2] for row in rows):.2f} s, "
            f"peak RSS {max(row[n][1] for row in rows):.0f} MB)" for n in names))
        print("ratios to storescp, median of per-round ratios: " + ", ".join(
            f"{n} {statistics.median(row['storescp'][0] / row[n][0] for row in rows):.2f}x"
            for n in names if n != "storescp") + f" (median times: {dc / med['dicomgate']:.2f}x)")
    finally:
        orthanc.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
