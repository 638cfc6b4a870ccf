"""Relay benchmark: PACS -> gateway -> cloud, dicomgate against Orthanc as the router.

    .venv/bin/python bench/relay.py [--instances 200] [--size 512] [--repeat 3] [--keep]

One run, same machine, same study (default 200 CT slices of 512x512x16 bit, ~105 MB):

 (a) Orthanc "PACS" -> dicomgate (`dicomgate run`: C-MOVE to its Portal AET, pipelined
     STOW-RS) -> Orthanc "cloud A" (DICOMweb). Wall time from enqueueing the retrieve
     until cloud A holds every instance. Needs the images package (Portal AET SCP).
 (b) Orthanc "router" (TCP_NODELAY=1): C-MOVE from the PACS into itself, then its DICOMweb
     client `POST /dicom-web/servers/cloud/stow` to a fresh "cloud B". Same end point.
 (c) the upload leg alone: the study already in dicomgate's spool, `dicomgate push --once`
     until cloud C holds every instance; compared with (b)'s STOW leg.
 (d) with --backlog N: the upload leg of a backlog, N small studies (--backlog-instances CT
     slices of --backlog-size each) in dicomgate's spool, complete, their uploads due at
     once: `dicomgate push --once` until cloud D holds them all, its CPU seconds, and the
     STOW-RS and QIDO-RS requests cloud D got (counted by cloud D itself, a Lua request
     filter); against Orthanc's DICOMweb client sending the same studies from a router
     that holds them (`POST /dicom-web/servers/cloud/stow`, all studies in one job).

Every Orthanc runs with TCP_NODELAY=1 (dicomgate.sandbox.orthanc sets it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

from dicomgate.app import FEATURES
from dicomgate.config import load
from dicomgate.sandbox.orthanc import Orthanc, free_port, request_logging
from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state import Store
from dicomgate.state.kinds import Retrieve
from dicomgate.state.names import StudyState

HERE = Path(__file__).resolve().parent
DICOMGATE = str(Path(sys.executable).parent / "dicomgate")
POLL = 0.05


def have_images() -> bool:
    return importlib.util.find_spec("dicomgate.images") is not None and \
        "dicomgate.images.feature" in FEATURES


def count(o: Orthanc) -> int:
    return int(o.get("/statistics")["CountInstances"])


def wait_count(o: Orthanc, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(o) >= n:
            return time.monotonic()
        time.sleep(POLL)
    raise SystemExit(f"{o.aet} holds {count(o)} of {n} instances after {timeout}s")


def write_config(state: Path, cloud: Orthanc, pacs: Orthanc | None, port: int,
                 concurrency: int, batch: str) -> Path:
    lines = ["[gateway]", 'hospital_id = "H33010200001"', f'state_dir = "{state}"',
             "[dicom]", 'ae_title = "DICOMGATE"', 'bind = "127.0.0.1"', f"port = {port}",
             'min_free_disk = "100MB"', "[tasks]", "workers = 4",
             "[upstream]", f'dicomweb_url = "{cloud.dicomweb_url}"',
             'api_url = "http://127.0.0.1:9/api"', f"concurrency = {concurrency}",
             f'batch_max_bytes = "{batch}"', '[log]', 'level = "info"', 'format = "json"']
    if pacs is not None:
        lines += ["[pacs]", f'ae_title = "{pacs.aet}"', 'host = "127.0.0.1"',
                  f"port = {pacs.dicom_port}", 'echo_interval = "1h"']
    path = state.parent / f"{state.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def spool_into(config: Path, files: list[bytes], complete: bool = False) -> None:
    """Put the studies in dicomgate's spool as its storage SCP would (legs c and d);
    `complete`: as the retrieve leaves them, every instance there."""
    cfg = load(config)
    store = Store(cfg.gateway.db_path)
    counts: dict[str, int] = {}
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        folder = cfg.gateway.spool_dir / ds.StudyInstanceUID / ds.SeriesInstanceUID
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(data)
        store.instances.record(sop_uid=ds.SOPInstanceUID, study_uid=ds.StudyInstanceUID,
                               series_uid=ds.SeriesInstanceUID, sop_class_uid=ds.SOPClassUID,
                               transfer_syntax=ds.file_meta.TransferSyntaxUID,
                               path=str(path), size=len(data),
                               sha256=hashlib.sha256(data).hexdigest(), source="bench")
        counts[ds.StudyInstanceUID] = counts.get(ds.StudyInstanceUID, 0) + 1
    for uid, n in counts.items() if complete else ():
        store.instances.set_study(uid, state=StudyState.COMPLETE, expected_count=n)
    store.close()


def claimed_at(log: Path, kind: str) -> float:
    """Wall time at which the daemon's workers took the first task of `kind` (its log)."""
    from datetime import datetime
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == "task.started" and e.get("kind") == kind:
                return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
    raise SystemExit(f"no task.started of {kind} in {log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in f.read_text().split()]
    return out


def leg_a(work: Path, pacs: Orthanc, study_uid: str, n: int,
          args) -> tuple[float, float, float]:
    """(total seconds, of which the retrieve waited in the queue, CPU seconds of the daemon
    and its Portal AET): the bench enqueues from another process, so the daemon's workers
    see it at their next 1 s poll, a wait the daemon's own enqueues (woken after commit) do
    not have."""
    cloud = Orthanc(work / "cloudA", "CLOUDA", dicomweb=True).start()
    port = free_port()
    pacs.add_modality("dicomgate", "DICOMGATE", "127.0.0.1", port)
    config = write_config(work / "gw_a", cloud, pacs, port, args.concurrency, args.batch)
    log = open(work / "gw_a.log", "ab")
    proc = subprocess.Popen([DICOMGATE, "--config", str(config), "run"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        store = Store(load(config).gateway.db_path)
        time.sleep(2.0)  # let the daemon open its Portal AET
        t0, wall0 = time.monotonic(), time.time()
        store.tasks.enqueue(Retrieve(study_uid=study_uid, hospital_id="H33010200001",
                                     reason="bench"), study_uid=study_uid)
        t1 = wait_count(cloud, n, args.timeout)
        time.sleep(0.3)  # the last confirmation
        cpu = cpu_seconds(proc.pid) + sum(cpu_seconds(c) for c in children(proc.pid))
        log.flush()
        return t1 - t0, claimed_at(work / "gw_a.log", "retrieve") - wall0, cpu
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        cloud.stop()


def leg_b(work: Path, pacs: Orthanc, study_uid: str, n: int, args) -> tuple[float, float]:
    cloud = Orthanc(work / "cloudB", "CLOUDB", dicomweb=True).start()
    router = Orthanc(work / "router", "ROUTER", dicomweb=True,
                     modalities={"pacs": (pacs.aet, "127.0.0.1", pacs.dicom_port)},
                     dicomweb_servers={"cloud": cloud.dicomweb_url}).start()
    pacs.add_modality("router", "ROUTER", "127.0.0.1", router.dicom_port)
    try:
        t0 = time.monotonic()
        router.post("/modalities/pacs/move", {
            "Level": "Study", "Resources": [{"StudyInstanceUID": study_uid}],
            "TargetAet": "ROUTER", "Synchronous": True, "Timeout": 600})
        wait_count(router, n, args.timeout)
        t_move = time.monotonic()
        router_id = router.study_id(study_uid)
        router.post("/dicom-web/servers/cloud/stow",
                    {"Resources": [router_id], "Synchronous": True})
        t1 = wait_count(cloud, n, args.timeout)
        return t1 - t0, t1 - t_move
    finally:
        router.stop()
        cloud.stop()


def push_once(config: Path, cloud: Orthanc, n: int, args) -> tuple[float, float]:
    """`dicomgate push --once` until the cloud holds `n` instances: seconds, and the CPU
    seconds of the push process."""
    before = os.times()
    t0 = time.monotonic()
    out = subprocess.run([DICOMGATE, "--config", str(config), "push", "--once"],
                         capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        raise SystemExit(f"push --once failed:\n{out.stdout}\n{out.stderr}")
    t1 = wait_count(cloud, n, args.timeout)
    after = os.times()
    return t1 - t0, (after.children_user - before.children_user
                     + after.children_system - before.children_system)


def leg_c(work: Path, files: list[bytes], n: int, args) -> tuple[float, float]:
    cloud = Orthanc(work / "cloudC", "CLOUDC", dicomweb=True).start()
    try:
        config = write_config(work / "gw_c", cloud, None, free_port(), args.concurrency,
                              args.batch)
        spool_into(config, files)
        return push_once(config, cloud, n, args)
    finally:
        cloud.stop()


def counting_cloud(work: Path, aet: str) -> tuple[Orthanc, Path]:
    """An Orthanc cloud that logs each HTTP request it gets (method and path)."""
    extra, log = request_logging(work)
    return Orthanc(work, aet, dicomweb=True, extra=extra).start(), log


def backlog_files(args) -> list[list[bytes]]:
    return [ct_instances(StudySpec(f"BACKLOG{i:04d}"), series=1,
                         per_series=args.backlog_instances, rows=args.backlog_size,
                         cols=args.backlog_size, seed=i) for i in range(args.backlog)]


def leg_d(work: Path, studies: list[list[bytes]], args) -> dict[str, float]:
    """dicomgate's push of a spooled backlog: seconds, CPU seconds, requests at the cloud."""
    n = sum(len(s) for s in studies)
    cloud, requests_log = counting_cloud(work / "cloudD", "CLOUDD")
    try:
        config = write_config(work / "gw_d", cloud, None, free_port(), args.concurrency,
                              args.batch)
        spool_into(config, [f for s in studies for f in s], complete=True)
        requests_log.write_text("")
        seconds, cpu = push_once(config, cloud, n, args)
        seen = [line.split(" ", 1) for line in requests_log.read_text().splitlines()]
        return {"s": seconds, "cpu_s": cpu,
                "stow_posts": sum(1 for m, u in seen if m == "POST"),
                "qido_gets": sum(1 for m, u in seen if m == "GET" and "/instances" in u)}
    finally:
        cloud.stop()


def leg_d_orthanc(work: Path, studies: list[list[bytes]], args) -> float:
    """Orthanc's DICOMweb client sending the same studies, held by a router, in one job."""
    n = sum(len(s) for s in studies)
    cloud = Orthanc(work / "cloudE", "CLOUDE", dicomweb=True).start()
    router = Orthanc(work / "router_d", "ROUTERD", dicomweb=True,
                     dicomweb_servers={"cloud": cloud.dicomweb_url}).start()
    try:
        for s in studies:
            for f in s:
                router.upload(f)
        t0 = time.monotonic()
        router.post("/dicom-web/servers/cloud/stow",
                    {"Resources": router.studies(), "Synchronous": True})
        return wait_count(cloud, n, args.timeout) - t0
    finally:
        router.stop()
        cloud.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=200)
    p.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--batch", default="32MB", help="upstream.batch_max_bytes")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--repeat", type=int, default=1, help="runs of each leg; medians reported")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--backlog", type=int, default=0, help="leg (d): this many small studies")
    p.add_argument("--backlog-instances", type=int, default=6)
    p.add_argument("--backlog-size", type=int, default=256)
    p.add_argument("--skip-relay", action="store_true", help="legs (a)-(c) not run")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dicomgate-relay-"))
    spec = StudySpec("BENCH0001")
    files = ct_instances(spec, series=2, per_series=args.instances // 2, rows=args.size,
                         cols=args.size)
    n = len(files)
    mb = sum(len(f) for f in files) / 1e6
    pacs = Orthanc(work / "pacs", "PACS", dicomweb=False).start()
    results: dict[str, object] = {"instances": n, "megabytes": round(mb, 1),
                                  "concurrency": args.concurrency, "batch": args.batch}
    runs: dict[str, list[float]] = {k: [] for k in ("b", "b_stow", "c", "c_cpu", "a",
                                                    "a_unqueued", "a_cpu", "d",
                                                    "d_orthanc", "d_cpu")}
    try:
        for f in files:
            pacs.upload(f)
        print(f"study: {n} instances, {mb:.1f} MB; work dir {work}", flush=True)
        backlog = backlog_files(args) if args.backlog else []
        for i in range(args.repeat):
            run = work / f"run{i}"
            if backlog:
                d, e = leg_d(run, backlog, args), leg_d_orthanc(run, backlog, args)
                runs["d"].append(d["s"])
                runs["d_orthanc"].append(e)
                runs["d_cpu"].append(d["cpu_s"])
                print(f"(d) backlog of {args.backlog} studies: dicomgate push {d['s']:.2f} s "
                      f"({d['cpu_s']:.2f} CPU s, {d['stow_posts']} STOW-RS, "
                      f"{d['qido_gets']} QIDO-RS) = {d['s'] / e:.2f}x Orthanc's STOW "
                      f"{e:.2f} s", flush=True)
            if args.skip_relay:
                continue
            tb, tb_stow = leg_b(run, pacs, spec.study_uid, n, args)
            runs["b"].append(tb)
            runs["b_stow"].append(tb_stow)
            print(f"(b) Orthanc router: {tb:.2f} s (C-MOVE {tb - tb_stow:.2f} s + STOW "
                  f"{tb_stow:.2f} s)", flush=True)
            tc, tc_cpu = leg_c(run, files, n, args)
            runs["c"].append(tc)
            runs["c_cpu"].append(tc_cpu)
            print(f"(c) dicomgate upload leg: {tc:.2f} s = {tc / tb_stow:.2f}x Orthanc's STOW "
                  f"leg ({mb / tc:.0f} MB/s; {tc_cpu:.2f} CPU s)", flush=True)
            if have_images():
                ta, wait, ta_cpu = leg_a(run, pacs, spec.study_uid, n, args)
                runs["a"].append(ta)
                runs["a_unqueued"].append(ta - wait)
                runs["a_cpu"].append(ta_cpu)
                print(f"(a) dicomgate relay: {ta:.2f} s = {ta / tb:.2f}x Orthanc's time "
                      f"(target <= 0.6x); {wait:.2f} s of it in the queue (1 s poll), "
                      f"without: {ta - wait:.2f} s = {(ta - wait) / tb:.2f}x; "
                      f"{ta_cpu:.2f} CPU s (daemon and Portal AET)", flush=True)
            else:
                print("(a) skipped: the images package (Portal AET) is not in this tree",
                      flush=True)
    finally:
        pacs.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    results.update(runs=args.repeat)
    if "b" in med:
        results.update(orthanc_total_s=round(med["b"], 2),
                       orthanc_stow_s=round(med["b_stow"], 2),
                       dicomgate_upload_s=round(med["c"], 2),
                       dicomgate_upload_cpu_s=round(med["c_cpu"], 2),
                       upload_ratio=round(med["c"] / med["b_stow"], 2))
    if "d" in med:
        results.update(backlog_push_s=round(med["d"], 2), backlog_cpu_s=round(med["d_cpu"], 2),
                       backlog_orthanc_stow_s=round(med["d_orthanc"], 2),
                       backlog_ratio=round(med["d"] / med["d_orthanc"], 2))
    if "a" in med:
        results.update(dicomgate_total_s=round(med["a"], 2), ratio=round(med["a"] / med["b"], 2),
                       dicomgate_cpu_s=round(med["a_cpu"], 2),
                       dicomgate_unqueued_s=round(med["a_unqueued"], 2),
                       ratio_unqueued=round(med["a_unqueued"] / med["b"], 2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TCP_NODELAY", "1")
    sys.exit(main())
