"""Hostile HTTP callers for tests and benchmarks: many connections that each send one header
line a second and never finish their request (a "slowloris"), reopened when the server ends
them. Run as a separate process so the attack does not share the measuring client's GIL:

    python -m dicomgate.sandbox.slow_clients --port 8080 --source 127.0.0.2 -n 300 --seconds 6

prints one JSON object: the answers the server gave, by HTTP status (counted when the answer
head arrives; the attacker ignores it and keeps sending), and "reset": connections closed
without an answer.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import time
from collections import Counter


def slow_attack(port: int, source: str, n: int, seconds: float,
                path: str = "/healthz") -> Counter:
    sel = selectors.DefaultSelector()
    socks: dict[socket.socket, list] = {}  # socket -> [request line sent, answer so far]
    answered: set[socket.socket] = set()
    seen: Counter = Counter()

    def open_one() -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((source, 0))
        s.connect_ex(("127.0.0.1", port))
        socks[s] = [False, b""]
        sel.register(s, selectors.EVENT_READ)

    for _ in range(n):
        open_one()
    end = time.monotonic() + seconds
    next_line = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_line:
            for s, state in list(socks.items()):
                try:  # a new connection starts its request line; older ones add a header
                    s.send(b"X-Slow: 1\r\n" if state[0] else f"GET {path} HTTP/1.1\r\n".encode())
                    state[0] = True
                except OSError:
                    pass
            next_line += 1.0
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                socks[s][1] += data
                head = socks[s][1]
                if s not in answered and b"\r\n\r\n" in head:
                    answered.add(s)
                    seen[head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/")
                         else "garbage"] += 1
                continue
            socks.pop(s)
            if s not in answered:
                seen["reset"] += 1
            answered.discard(s)
            sel.unregister(s)
            s.close()
            open_one()
    for s in socks:
        s.close()
    sel.close()
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", default="127.0.0.1")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--path", default="/healthz")
    args = ap.parse_args()
    print(json.dumps(slow_attack(args.port, args.source, args.n, args.seconds, args.path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
