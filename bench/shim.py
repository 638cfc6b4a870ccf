"""Benchmark: the shim's qrurl at a fixed request rate on loopback, Orthanc's REST API as peer.

Open-loop load: requests are scheduled every 1/rate seconds and latency is measured from the
scheduled time (so a stalled server is not excused by a stalled client). The peer is Orthanc
(C++ HTTP server) answering GET /system at the same rate in the same run.

    .venv/bin/python bench/shim.py [--rate 500] [--seconds 30] [--connections 16]
"""

from __future__ import annotations

import argparse
import http.client
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dicomgate.sandbox.orthanc import Orthanc, free_port

SM4_KEY = "0123456789abcdeffedcba9876543210"


def wait(port: int, path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no answer on port {port}")


def start_shim(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = tmp / "dicomgate.toml"
    cfg.write_text(f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp / 'state'}"
[dicom]
ae_title = "DICOMGATE"
[shim]
bind = "127.0.0.1"
port = {port}
[qr]
film_url = "http://wx.imagingunion.com/iuweixin/iu_scanFilmInfo"
sm4_key = "{SM4_KEY}"
[log]
format = "json"
""")
    log = open(tmp / "shim.log", "wb")  # one JSON log line per request, as in production
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from dicomgate.cli import main; "
                             "sys.exit(main())", "--config", str(cfg), "run"],
                            stdout=log, stderr=subprocess.STDOUT)
    wait(port, "/openapi.json", proc)
    return proc, port


def load(port: int, paths: list[str], rate: float, seconds: float,
         connections: int) -> dict:
    """Open-loop: a ticker schedules `rate` requests per second; workers send them."""
    todo: queue.Queue = queue.Queue()
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while True:
            item = todo.get()
            if item is None:
                return
            due, path = item
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and (b'"code": 200' in body or b"Version" in body)
                err = None if ok else f"HTTP {r.status}"
            except OSError as exc:
                err = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            done = time.perf_counter()
            with lock:
                lat.append(done - due)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    n = int(rate * seconds)
    start = time.perf_counter() + 0.2
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        todo.put((due, paths[i % len(paths)]))
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join(timeout=30)
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": len(errors), "achieved_rps": len(lat) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-shim-"))
    procs: list[subprocess.Popen] = []
    orthanc: Orthanc | None = None
    try:
        shim, shim_port = start_shim(tmp)
        procs.append(shim)
        orthanc = Orthanc(tmp / "orthanc", "PEER", extra={"HttpThreadsCount": 16}).start()
        orthanc_port = orthanc.http_port
        # every request a distinct exam: the URL cache never helps, SM4 runs every time
        qr_paths = [f"/getway/reportAndFilm/api/qrurl?accessNumber=CT{i:07d}&modality=CT"
                    f"&hospitalId=H33010200001" for i in range(int(args.rate * args.seconds))]
        results = {
            "dicomgate qrurl": load(shim_port, qr_paths, args.rate, args.seconds,
                                    args.connections),
            "Orthanc GET /system (peer)": load(orthanc_port, ["/system"], args.rate,
                                               args.seconds, args.connections),
        }
    finally:
        if orthanc is not None:
            orthanc.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rate {args.rate:g}/s for {args.seconds:g}s, {args.connections} keep-alive "
          "connections, loopback, latency from the scheduled send time\n")
    print("| server | requests | errors | achieved req/s | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['requests']} | {r['errors']} | {r['achieved_rps']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} |")
    a, b = results["dicomgate qrurl"], results["Orthanc GET /system (peer)"]
    print(f"\np99 ratio dicomgate/Orthanc: {a['p99_ms'] / b['p99_ms']:.2f}; "
          f"target p99 < 20 ms: {'met' if a['p99_ms'] < 20 and not a['errors'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
