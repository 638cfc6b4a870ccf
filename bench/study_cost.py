"""Where a small study's retrieve time goes: each DICOM step timed on its own, one study
after the other (no concurrency), against an Orthanc PACS.

    .venv/bin/python bench/study_cost.py [--studies 20] [--per-study 6] [--size 256]

Steps, medians over the studies:
  - association alone (A-ASSOCIATE + C-ECHO + release) to the PACS;
  - C-FIND STUDY (NumberOfStudyRelatedInstances), SERIES, IMAGE, each on its own association;
  - C-MOVE STUDY into DCMTK storescp (the reference receiver) and into dicomgate's Portal
    AET (`dicomgate run`, no upstream): the difference is the Portal AET's own cost;
  - the whole `retrieve` task (Retriever.study: queries, C-MOVE, completeness check, state
    transactions), in this process against the same `dicomgate run`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dicomgate.config import load
from dicomgate.images.retrieve import Retriever
from dicomgate.images.scu import PacsClient
from dicomgate.sandbox.orthanc import Orthanc, free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state import Store

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from receive import start_dicomgate, start_storescp, stop  # noqa: E402

GW_AET, DCMTK_AET, PACS_AET = "DICOMGATE", "STORESCP", "HOSPPACS"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def one_study(steps: dict[str, list[float]], uid: str, *, odd: bool, client: PacsClient,
              to_dcmtk: PacsClient, retriever: Retriever) -> None:
    def add(name: str, fn) -> None:
        steps.setdefault(name, []).append(timed(fn))

    series = client.find("SERIES", {"StudyInstanceUID": uid, "SeriesInstanceUID": ""})
    s_uid = str(series[0].SeriesInstanceUID)
    if odd:  # the whole task first on odd studies: nothing cached either way
        add("retrieve task (whole)", lambda: retriever.study(uid))
        add("C-MOVE STUDY -> dicomgate (again)",
            lambda: client.move("STUDY", {"StudyInstanceUID": uid}))
    else:
        add("C-MOVE STUDY -> dicomgate", lambda: client.move("STUDY", {"StudyInstanceUID": uid}))
    add("association + C-ECHO", client.echo)
    add("C-FIND STUDY (count)", lambda: client.study_instance_count(uid))
    add("C-FIND SERIES", lambda: client.find("SERIES", {"StudyInstanceUID": uid,
                                                        "SeriesInstanceUID": ""}))
    add("C-FIND IMAGE", lambda: client.find("IMAGE", {
        "StudyInstanceUID": uid, "SeriesInstanceUID": s_uid, "SOPInstanceUID": ""}))
    add("C-MOVE STUDY -> storescp", lambda: to_dcmtk.move("STUDY", {"StudyInstanceUID": uid}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--per-study", type=int, default=6)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicomgate-cost-"))
    gw_port, dcmtk_port = free_port(), free_port()
    pacs = Orthanc(work / "pacs", PACS_AET, modalities={
        "gw": (GW_AET, "127.0.0.1", gw_port), "dcmtk": (DCMTK_AET, "127.0.0.1", dcmtk_port)})
    pacs.start()
    steps: dict[str, list[float]] = {}
    try:
        specs = []
        for i in range(args.studies):
            spec = StudySpec(f"COST{i:04d}")
            for f in ct_instances(spec, series=1, per_series=args.per_study, rows=args.size,
                                  cols=args.size, seed=i):
                pacs.upload(f)
            specs.append(spec)
        gw = start_dicomgate(work, gw_port, pacs.dicom_port)
        dc = start_storescp(work, dcmtk_port, None)
        cfg = load(work / "gw.toml")
        client = PacsClient(cfg.dicom, cfg.pacs)
        to_dcmtk = PacsClient(cfg.dicom.__class__(ae_title=DCMTK_AET), cfg.pacs)
        store = Store(cfg.gateway.db_path)
        retriever = Retriever(store, client)
        try:
            for i, spec in enumerate(specs):
                one_study(steps, spec.study_uid, odd=bool(i % 2), client=client,
                          to_dcmtk=to_dcmtk, retriever=retriever)
        finally:
            store.close()
            stop(gw)
            stop(dc)
    finally:
        pacs.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.studies} studies x {args.per_study} instances of {args.size}x{args.size}; "
          "median (min-max) ms per study:")
    for name, xs in steps.items():
        print(f"  {name:36s} {statistics.median(xs) * 1e3:7.1f}  "
              f"({min(xs) * 1e3:.1f}-{max(xs) * 1e3:.1f})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    sys.exit(main())
