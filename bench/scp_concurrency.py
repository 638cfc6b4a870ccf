"""Portal AET under concurrent associations: N small studies C-MOVEd from Orthanc with K
C-MOVEs at a time (so K incoming store associations at once), into dicomgate's Portal AET
(`dicomgate run`, no upstream) and, in the same run, into DCMTK `storescp --fork` (one
process per association: the reference, and the receive path mercure uses).

    .venv/bin/python bench/scp_concurrency.py [--studies 40] [--per-study 6] [--size 256]
                                              [--concurrency 1 4 8] [--extra 'processes = 2']

Wall time for all N studies and the receiver's CPU seconds (dicomgate: its SCP
process(es); storescp: the parent and its forked children, from /proc on exit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dicomgate.config.model import DicomConfig, PacsConfig
from dicomgate.images.scu import PacsClient
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances

GW_AET, DCMTK_AET, PACS_AET = "DICOMGATE", "STORESCP", "HOSPPACS"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from receive import children, start_dicomgate, start_storescp, stop  # noqa: E402


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # own + waited-for children (storescp --fork reaps its children)
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return total



def move_all(pacs_port: int, dest: str, uids: list[str], k: int) -> float:
    client = PacsClient(DicomConfig(ae_title=dest),
                        PacsConfig(PACS_AET, "127.0.0.1", pacs_port, timeout=30,
                                   move_timeout=600))

    def one(uid: str) -> None:
        r = client.move("STUDY", {"StudyInstanceUID": uid})
        if r.failed or r.status != 0:
            raise SystemExit(f"C-MOVE to {dest}: 0x{r.status:04X}, {r.failed} failed")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, uids))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=40)
    ap.add_argument("--per-study", type=int, default=6)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--extra", action="append", default=[],
                    help="a line for dicomgate's [dicom] section, e.g. 'scp_processes = 2'")
    ap.add_argument("--no-storescp", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicomgate-scpconc-"))
    gw_port, dc_port = free_port(), free_port()
    pacs = Orthanc(work / "pacs", PACS_AET, modalities={
        "gw": (GW_AET, "127.0.0.1", gw_port), "dc": (DCMTK_AET, "127.0.0.1", dc_port)},
        extra={"DicomThreadsCount": 16})
    pacs.start()
    try:
        uids = []
        for i in range(args.studies):
            spec = StudySpec(f"SC{i:04d}")
            for f in ct_instances(spec, series=1, per_series=args.per_study, rows=args.size,
                                  cols=args.size, seed=i):
                pacs.upload(f)
            uids.append(spec.study_uid)
        n = args.studies * args.per_study
        print(f"{args.studies} studies x {args.per_study} instances ({args.size}x{args.size})"
              f"; dicomgate [dicom] extra: {args.extra or '-'}")
        for k in args.concurrency:
            gw = start_dicomgate(work, gw_port, pacs.dicom_port, extra=args.extra,
                                 settle=1.0)
            scps = children(gw.pid)
            c0 = cpu_of(scps)
            t_gw = move_all(pacs.dicom_port, GW_AET, uids, k)
            c_gw = cpu_of(scps) - c0
            stop(gw)
            got = len(list((work / "gw-state" / "spool").rglob("*.dcm")))
            line = (f"K={k}: dicomgate {t_gw:.2f} s ({n / t_gw:.0f} inst/s, SCP CPU "
                    f"{c_gw:.2f} s, {len(scps)} process(es), stored {got})")
            if not args.no_storescp:
                dc = start_storescp(work, dc_port, fork=True)
                t_dc = move_all(pacs.dicom_port, DCMTK_AET, uids, k)
                time.sleep(0.5)  # its last children exit and are reaped
                c_dc = cpu_of([dc.pid])
                stop(dc)
                line += (f" | storescp --fork {t_dc:.2f} s ({n / t_dc:.0f} inst/s, CPU "
                         f"{c_dc:.2f} s) | ratio {t_dc / t_gw:.2f}x")
            print(line, flush=True)
    finally:
        pacs.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    sys.exit(main())
