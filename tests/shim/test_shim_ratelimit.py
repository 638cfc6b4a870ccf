"""Per-source rate limit: one allowed address flooding qrcode is slowed to its bucket, while
another address keeps being served in full."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest
from shim_fixtures import HOSPITAL, start_shim

from tests.support import stop_daemon

FLOODER = "127.0.0.2"
QR = "/getway/reportAndFilm/api/qr{}?accessNumber={}&modality=CT&hospitalId=" + HOSPITAL
# the defaults (shim.rate, shim.burst); a PNG takes 50 tokens: 10 at once, then 5 a second
RATE, BURST, QRCODE_COST = 250, 500, 50


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    dead = "http://127.0.0.1:9/dicom-web"
    s = start_shim(tmp_path_factory.mktemp("limited"), dead, dead,
                   allow=("127.0.0.1/32", f"{FLOODER}/32"))
    yield s
    stop_daemon(s.proc)


def flood(port: int, seconds: float, connections: int) -> Counter:
    seen: Counter = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def one(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                       source_address=(FLOODER, 0))
        i = 0
        while time.monotonic() < end:
            i += 1
            c.request("GET", QR.format("code", f"F{k}-{i}"))
            r = c.getresponse()
            body = r.read()
            with lock:
                seen[r.status if b"too many requests" not in body else "limited"] += 1

    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 20)
    return seen


def test_flooding_source_is_held_to_its_bucket(limited):
    seconds = 4.0
    got: dict[str, Counter] = {}
    flooder = threading.Thread(target=lambda: got.setdefault(
        "flood", flood(limited.port, seconds, 32)))
    flooder.start()
    other: Counter = Counter()
    c = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10)
    for i in range(30):  # another source, at 10 requests a second: all served
        c.request("GET", QR.format("url", f"O{i}"))
        r = c.getresponse()
        other[(r.status, b'"code": 200' in r.read())] += 1
        time.sleep(0.1)
    flooder.join(timeout=60)
    seen = got["flood"]
    assert other == Counter({(200, True): 30}), other
    # the bucket: BURST at once, then RATE per second, in PNGs; a little slack for timing
    allowed = (BURST + RATE * (seconds + 2.5)) / QRCODE_COST
    assert seen[200] <= allowed, seen
    assert seen["limited"] > 0, seen  # past MAX_WAIT: refused, in the spec's JSON
