"""Benchmark: the shim's qrurl at a fixed request rate on loopback, Orthanc's REST API as peer.

Open-loop load: requests are scheduled every 1/rate seconds and latency is measured from the
scheduled time (so a stalled server is not excused by a stalled client). The peer is Orthanc
(C++ HTTP server) answering GET /system at the same rate in the same run.

    .venv/bin/python bench/shim.py [--rate 500] [--seconds 30] [--connections 16]

Under attack (issue 11): qrurl at --rate while --slow slow connections (half from an allowed
address 127.0.0.2, half from a disallowed one 127.0.0.3; each sends a header line a second
and never finishes) and --lookups lookups against a platform that accepts TCP and never
answers, each in its own process. Both shim servers are measured (the asyncio front, and
waitress tuned: bench/waitress_front.py), then Orthanc under the same slow connections.

    .venv/bin/python bench/shim.py --attack [--rate 200] [--seconds 20] [--slow 500]
                                    [--lookups 40] [--servers asyncio,waitress]

`--flood N` adds a third phase: N keep-alive connections from one allowed source (127.0.0.5)
asking for `qrcode` back to back (no slow connections then), qrurl measured as before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dicomgate.sandbox.orthanc import Orthanc, free_port

SM4_KEY = "0123456789abcdeffedcba9876543210"
SM2_KEY = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
HOSPITAL = "H33010200001"
ALLOWED, DISALLOWED = "127.0.0.2", "127.0.0.3"
WORKSTATIONS = "127.0.0.4"  # where the lookups come from (the doctors' plugins)
FLOODER = "127.0.0.5"  # allowed; floods qrcode (its own address: the slow ones' are tarpitted)


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


def start_shim(tmp: Path, server: str = "asyncio",
               platform: str | None = None) -> tuple[subprocess.Popen, int]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = tmp / "dicomgate.toml"
    lookup = "" if platform is None else f"""
[login]
sm2_private_key = "{SM2_KEY}"
[lookup]
province_dicomweb_url = "{platform}"
national_dicomweb_url = "{platform}"
"""
    cfg.write_text(f"""
[gateway]
hospital_id = "{HOSPITAL}"
state_dir = "{tmp / 'state'}"
[dicom]
ae_title = "DICOMGATE"
port = {free_port()}
[shim]
bind = "127.0.0.1"
port = {port}
allow = ["127.0.0.1/32", "{ALLOWED}/32", "{WORKSTATIONS}/32", "{FLOODER}/32"]
[qr]
film_url = "http://wx.imagingunion.com/iuweixin/iu_scanFilmInfo"
sm4_key = "{SM4_KEY}"
{lookup}
[log]
format = "json"
""")
    log = open(tmp / "shim.log", "wb")  # one JSON log line per request, as in production
    # waitress: the same application behind bench/waitress_front.py (not in the product)
    launcher = ([str(Path(__file__).with_name("waitress_front.py"))] if server == "waitress"
                else ["-c", "import sys; from dicomgate.cli import main; sys.exit(main())"])
    proc = subprocess.Popen([sys.executable, *launcher, "--config", str(cfg), "run"],
                            stdout=log, stderr=subprocess.STDOUT)
    wait(port, "/openapi.json", proc)
    return proc, port


GIVE_UP = 50  # errors after which a run stops sending (bounded time when a server is down)


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
            if len(errors) >= GIVE_UP:  # the server stopped answering: the rest count as lost
                with lock:
                    errors.append("abandoned")
                continue
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

    return {"requests": len(lat) + errors.count("abandoned"), "errors": len(errors),
            "achieved_rps": len(lat) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else 0}


# --- under attack ----------------------------------------------------------------------

def hung_platform(port_q: multiprocessing.Queue, seconds: float) -> None:
    """Accepts TCP connections and never answers (a stuck platform)."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=512)
    sock.settimeout(0.2)
    port_q.put(sock.getsockname()[1])
    held = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            held.append(sock.accept()[0])
        except TimeoutError:
            continue


def lookup_callers(port: int, n: int, seconds: float, out_q: multiprocessing.Queue) -> None:
    """`n` callers, each asking for a lookup again 0.5 s after its last answer."""
    from collections import Counter
    seen: Counter = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < end:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                               source_address=(WORKSTATIONS, 0))
                c.request("GET", "/iuWorkStation/swipingIdCardNo?hisUserId=bench01"
                                 "&idCardNo=11010519491231002X")
                body = json.loads(c.getresponse().read())
                c.close()
                code = str(body["code"]) + (" busy" if "busy" in body["message"] else "")
            except (OSError, ValueError) as exc:
                code = type(exc).__name__
            with lock:
                seen[code] += 1
            time.sleep(0.5)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    out_q.put(dict(seen))


def slow_clients(port: int, source: str, n: int, seconds: float,
                 path: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dicomgate.sandbox.slow_clients", "--port",
                             str(port), "--source", source, "-n", str(n), "--seconds",
                             str(seconds), "--path", path], stdout=subprocess.PIPE, text=True)


def flood_qrcode(port: int, n: int, seconds: float, out_q: multiprocessing.Queue) -> None:
    """`n` keep-alive connections from FLOODER sending qrcode back to back."""
    from collections import Counter
    seen: Counter = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def caller(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                       source_address=(FLOODER, 0))
        i = 0
        while time.monotonic() < end:
            i += 1
            try:
                c.request("GET", f"/getway/reportAndFilm/api/qrcode?accessNumber=F{k:02d}{i:07d}"
                                 f"&modality=CT&hospitalId={HOSPITAL}")
                r = c.getresponse()
                r.read()
                code = str(r.status)
            except OSError as exc:
                code = type(exc).__name__
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                               source_address=(FLOODER, 0))
            with lock:
                seen[code] += 1

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    out_q.put(dict(seen))


def flooded(args, port: int) -> dict:
    out_q: multiprocessing.Queue = multiprocessing.Queue()
    flood = multiprocessing.Process(target=flood_qrcode,
                                    args=(port, args.flood, args.seconds + 3, out_q))
    flood.start()
    time.sleep(1)
    qr = [f"/getway/reportAndFilm/api/qrurl?accessNumber=FL{i:07d}&modality=CT"
          f"&hospitalId={HOSPITAL}" for i in range(int(args.rate * args.seconds))]
    result = load(port, qr, args.rate, args.seconds, args.connections)
    result["flood"] = out_q.get(timeout=args.seconds + 90)
    flood.join(timeout=10)
    return result


def open_session(tmp: Path) -> None:
    from dicomgate.state import Store
    store = Store(tmp / "state" / "state.db")
    store.sessions.open(HOSPITAL, "bench01", {"doctorName": "bench"}, None, 3600.0, {})
    store.close()


def under_attack(args, server: str, tmp: Path) -> dict:
    span = args.seconds + 8  # the attack outlasts the measured load
    port_q: multiprocessing.Queue = multiprocessing.Queue()
    platform = multiprocessing.Process(target=hung_platform, args=(port_q, span + 30))
    platform.start()
    url = f"http://127.0.0.1:{port_q.get(timeout=10)}/dicom-web"
    shim, port = start_shim(tmp, server, url)
    try:
        open_session(tmp)
        qr = [f"/getway/reportAndFilm/api/qrurl?accessNumber=CT{i:07d}&modality=CT"
              f"&hospitalId={HOSPITAL}" for i in range(int(args.rate * args.seconds))]
        quiet = load(port, qr, args.rate, min(args.seconds, 10), args.connections)
        slow = [slow_clients(port, src, args.slow // 2, span, "/healthz")
                for src in (ALLOWED, DISALLOWED)]
        out_q: multiprocessing.Queue = multiprocessing.Queue()
        callers = multiprocessing.Process(target=lookup_callers,
                                          args=(port, args.lookups, span - 2, out_q))
        callers.start()
        time.sleep(3)  # slow connections open, lookups hanging
        attacked = load(port, qr, args.rate, args.seconds, args.connections)
        attacked["alive"] = shim.poll() is None
        attacked["slow"] = {src: json.loads(p.communicate(timeout=span + 60)[0] or "{}")
                            for src, p in zip((ALLOWED, DISALLOWED), slow, strict=True)}
        attacked["lookups"] = out_q.get(timeout=span + 90)
        callers.join(timeout=10)
        result = {"quiet": quiet, "attacked": attacked}
        if args.flood:
            time.sleep(3)  # the slow connections are gone
            result["flooded"] = flooded(args, port)
            result["flooded"]["alive"] = shim.poll() is None
    finally:
        shim.send_signal(signal.SIGTERM)
        try:
            shim.wait(timeout=15)
        except subprocess.TimeoutExpired:
            shim.kill()
        platform.terminate()
        platform.join(timeout=5)
    return result


def orthanc_under_attack(args, tmp: Path) -> dict:
    orthanc = Orthanc(tmp / "orthanc", "PEER", extra={"HttpThreadsCount": 16}).start()
    try:
        port = orthanc.http_port
        quiet = load(port, ["/system"], args.rate, min(args.seconds, 10), args.connections)
        slow = [slow_clients(port, src, args.slow // 2, args.seconds + 8, "/system")
                for src in (ALLOWED, DISALLOWED)]
        time.sleep(3)
        attacked = load(port, ["/system"], args.rate, args.seconds, args.connections)
        attacked["slow"] = {src: json.loads(p.communicate(timeout=120)[0] or "{}")
                            for src, p in zip((ALLOWED, DISALLOWED), slow, strict=True)}
    finally:
        orthanc.stop()
    return {"quiet": quiet, "attacked": attacked}


def attack_main(args) -> int:
    results: dict[str, dict] = {}
    for server in args.servers.split(","):
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-shim-{server}-"))
        try:
            results[f"dicomgate qrurl, {server}"] = under_attack(args, server, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_peer:
        tmp = Path(tempfile.mkdtemp(prefix="bench-shim-orthanc-"))
        try:
            results["Orthanc GET /system (peer)"] = orthanc_under_attack(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"qrurl at {args.rate:g}/s, {args.connections} keep-alive connections, loopback; "
          f"attack: {args.slow} slow connections (half from allowed {ALLOWED}, half from "
          f"disallowed {DISALLOWED}) + {args.lookups} lookups against a platform that never "
          f"answers (shim only); quiet {min(args.seconds, 10):g}s then attacked "
          f"{args.seconds:g}s\n")
    print("| server | phase | requests | errors | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for phase in ("quiet", "attacked", "flooded"):
            if phase not in r:
                continue
            x = r[phase]
            print(f"| {name} | {phase} | {x['requests']} | {x['errors']} | {x['p50_ms']:.2f} "
                  f"| {x['p99_ms']:.2f} | {x['max_ms']:.1f} |")
    print()
    for name, r in results.items():
        a = r["attacked"]
        print(f"{name}: slow connections ended by status {a['slow']}; "
              f"lookups {a.get('lookups', '-')}; p99 attacked/quiet "
              f"{a['p99_ms'] / r['quiet']['p99_ms']:.1f}x; goal p99 < 50 ms, 0 errors: "
              f"{'met' if a['p99_ms'] < 50 and not a['errors'] else 'MISSED'}")
        f = r.get("flooded")
        if f:
            print(f"{name}: under {args.flood} connections flooding qrcode from {FLOODER} "
                  f"(answers {f['flood']}): qrurl p99 {f['p99_ms']:.2f} ms, {f['errors']} "
                  f"errors; goal p99 < 50 ms, 0 errors: "
                  f"{'met' if f['p99_ms'] < 50 and not f['errors'] else 'MISSED'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--attack", action="store_true", help="the under-attack mode")
    ap.add_argument("--slow", type=int, default=500, help="slow connections (attack)")
    ap.add_argument("--lookups", type=int, default=40, help="hung lookups (attack)")
    ap.add_argument("--servers", default="asyncio,waitress",
                    help="shim servers (attack; quiet mode: asyncio unless given)")
    ap.add_argument("--no-peer", action="store_true", help="skip Orthanc (attack)")
    ap.add_argument("--flood", type=int, default=0,
                    help="attack: then N connections from one allowed source flood qrcode")
    args = ap.parse_args()
    if args.attack:
        if "--rate" not in sys.argv:
            args.rate = 200
        if "--seconds" not in sys.argv:
            args.seconds = 20
        return attack_main(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench-shim-"))
    procs: list[subprocess.Popen] = []
    orthanc: Orthanc | None = None
    results = {}
    # every request a distinct exam: the URL cache never helps, SM4 runs every time
    qr_paths = [f"/getway/reportAndFilm/api/qrurl?accessNumber=CT{i:07d}&modality=CT"
                f"&hospitalId=H33010200001" for i in range(int(args.rate * args.seconds))]
    servers = args.servers.split(",") if "--servers" in sys.argv else ["asyncio"]
    try:
        for server in servers:
            shim, shim_port = start_shim(tmp / server, server)
            procs.append(shim)
            results[f"dicomgate qrurl, {server}"] = load(shim_port, qr_paths, args.rate,
                                                         args.seconds, args.connections)
        orthanc = Orthanc(tmp / "orthanc", "PEER", extra={"HttpThreadsCount": 16}).start()
        results["Orthanc GET /system (peer)"] = load(orthanc.http_port, ["/system"], args.rate,
                                                     args.seconds, args.connections)
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
    b = results["Orthanc GET /system (peer)"]
    for server in servers:
        a = results[f"dicomgate qrurl, {server}"]
        print(f"\n{server}: p99 ratio dicomgate/Orthanc: {a['p99_ms'] / b['p99_ms']:.2f}; "
              f"target p99 < 20 ms: "
              f"{'met' if a['p99_ms'] < 20 and not a['errors'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
