"""Report printing keeps answering under attack (issue 11): slow connections from an allowed
and a disallowed address, idle keep-alive connections, and lookups against a platform that
accepts TCP and never answers. All over real HTTP against `dicomgate run`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import requests
from shim_fixtures import Shim, shim_config, start_shim
from test_shim_login import bc_hex, login_query

from dicomgate.sandbox.orthanc import free_port
from tests.support import run_cli, stop_daemon

QRURL = "/getway/reportAndFilm/api/qrurl"
LOOKUP = "/iuWorkStation/swipingIdCardNo"
ALLOWED_ATTACKER, DISALLOWED_ATTACKER = "127.0.0.2", "127.0.0.3"
WORKSTATION = "127.0.0.4"  # where the doctors' lookups come from
PER_SOURCE = 50


class HungPlatform:
    """Accepts TCP connections and never answers (a platform whose server is stuck)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture(scope="module")
def hung() -> Iterator[HungPlatform]:
    h = HungPlatform()
    yield h
    h.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, hung) -> Iterator[Shim]:
    """A daemon with short limits, its lookup platforms hung."""
    url = f"http://127.0.0.1:{hung.port}/dicom-web"
    s = start_shim(tmp_path_factory.mktemp("guarded"), url, url,
                   allow=("127.0.0.1/32", f"{ALLOWED_ATTACKER}/32", f"{WORKSTATION}/32"),
                   max_connections_per_source=PER_SOURCE, request_timeout="2s",
                   keepalive_timeout="1s", lookup_threads=2, lookup_queue=2)
    yield s
    stop_daemon(s.proc)


def attack(port: int, source: str, n: int, seconds: float) -> subprocess.Popen:
    """The slow clients in their own process (they must not slow the measuring client)."""
    return subprocess.Popen([sys.executable, "-m", "dicomgate.sandbox.slow_clients",
                             "--port", str(port), "--source", source, "-n", str(n),
                             "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)


def qrurl_while(shim: Shim, busy: Callable[[], bool]) -> list[tuple[int, int]]:
    """qrurl from 127.0.0.1, one after another, for as long as `busy()`."""
    out = []
    for i in range(10_000):
        if not busy():
            break
        try:
            r = requests.get(shim.base + QRURL, params={"accessNumber": f"P{i}",
                                                        "modality": "CT",
                                                        "hospitalId": "H33010200001"}, timeout=5)
            out.append((r.status_code, r.json()["code"]))
        except requests.RequestException as exc:
            out.append((0, type(exc).__name__))
        time.sleep(0.05)
    return out


def test_slow_connections_do_not_stop_printing(guarded):
    procs = {src: attack(guarded.port, src, 300, 8.0)
             for src in (ALLOWED_ATTACKER, DISALLOWED_ATTACKER)}
    time.sleep(1.0)  # the attack is under way
    health = requests.get(guarded.base + "/healthz", timeout=5)
    answers = qrurl_while(guarded, lambda: all(p.poll() is None for p in procs.values()))
    seen = {src: Counter(json.loads(p.communicate(timeout=60)[0]))
            for src, p in procs.items()}
    assert len(answers) >= 20 and set(answers) == {(200, 200)}, Counter(answers)
    assert health.status_code == 200
    # refused at accept: only 403s, at once
    assert set(seen[DISALLOWED_ATTACKER]) == {"403"}, seen
    # allowed source: past its connection limit 503 at once; within it, cut off at the deadline
    allowed = seen[ALLOWED_ATTACKER]
    assert allowed["503"] > 0 and allowed["408"] >= PER_SOURCE and "200" not in allowed, seen
    # one summary line per period, not one line per refused connection
    lines = [ln for ln in guarded.log.read_text().splitlines()
             if "shim.connections_refused" in ln]
    total = sum(seen[DISALLOWED_ATTACKER].values()) + sum(allowed.values())
    assert total >= 500 and len(lines) <= 3, (total, len(lines))
    metrics = requests.get(guarded.base + "/metrics", timeout=5).text
    assert 'dicomgate_http_requests_total{code="not_allowed",endpoint="connection"}' in metrics
    assert 'dicomgate_http_pool_in_flight{pool="lookup"}' in metrics


def test_idle_keepalive_connection_is_reaped(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as s:
        s.sendall(f"GET {QRURL}?accessNumber=K1&modality=CT&hospitalId=H33010200001 HTTP/1.1\r\n"
                  "Host: 127.0.0.1\r\n\r\n"
                  .encode())
        got = b""
        while b'"data"' not in got:
            got += s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        rest = b""
        while chunk := s.recv(65536):  # the server closes it (the test's timeout: 10 s)
            rest += chunk
        assert rest == b"" or rest.endswith(b"}")


def test_hung_lookup_platform_does_not_delay_printing(guarded):
    status, r = guarded.raw("GET", "/hrball/?" + login_query(bc_hex(), hisUserId="hung01"))
    assert r["code"] == 200, r
    results: list[dict] = []
    lock = threading.Lock()

    def lookup() -> None:
        try:
            _, body = guarded.raw("GET", f"{LOOKUP}?hisUserId=hung01&idCardNo=110105194912"
                                         "31002X", source=WORKSTATION)
        except OSError as exc:
            body = {"code": type(exc).__name__, "message": ""}
        with lock:
            results.append(body)

    lookups = [threading.Thread(target=lookup, daemon=True) for _ in range(40)]
    for t in lookups:
        t.start()
    answers = qrurl_while(guarded, lambda: any(t.is_alive() for t in lookups))
    for t in lookups:
        t.join(timeout=30)
    assert len(answers) >= 5 and set(answers) == {(200, 200)}, Counter(answers)
    assert len(results) == 40
    busy = [r for r in results if r["code"] == 202 and "busy" in r["message"]]
    timed_out = [r for r in results if r["code"] == 500 and "no answer within" in r["message"]]
    assert len(busy) + len(timed_out) == 40, results
    assert len(busy) >= 30 and len(timed_out) >= 4  # 2 running + 2 queued at least


def test_connections_from_a_disallowed_source_get_403_json(guarded):
    status, r = guarded.raw("GET", f"{QRURL}?accessNumber=A1&modality=CT&hospitalId=H33010200001",
                            source=DISALLOWED_ATTACKER)
    assert status == 403 and r["code"] == 403 and DISALLOWED_ATTACKER in r["message"]


def test_port_in_use_is_a_clear_error(tmp_path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        cfg = shim_config(tmp_path, port, "http://127.0.0.1:1/x", "http://127.0.0.1:1/x")
        out = run_cli("run", config=cfg, timeout=60)
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stdout + out.stderr
