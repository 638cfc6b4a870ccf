"""The reference cloud REST receiver: docs/upstream-api.md, for the tests and the demo.

Verifies HMAC signatures (or bearer tokens) independently of dicomgate's code, keeps
idempotency records, and can be told to fail the next requests (503 + Retry-After).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SKEW = 300
NONCE_TTL = 600


class CloudApi:
    def __init__(self, auth: str = "none", token: str = "", key_id: str = "",
                 secret: str = "", tls=None, on_delete=None):
        self.auth, self.token, self.key_id, self.secret = auth, token, key_id, secret
        # Called with (study_uids, sop_uids) of an applied deletion: "the cloud removes
        # those images" from the DICOMweb store it fronts (e.g. an Orthanc's REST API).
        self.on_delete = on_delete
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []     # every request, as received
        self.applied: list[dict[str, Any]] = []      # effects applied (not replays)
        self.idem: dict[str, tuple[str, int, dict]] = {}  # key -> (body hash, status, reply)
        self.nonces: dict[str, float] = {}
        self.reports: dict[tuple[str, str], dict] = {}
        self.fail_next: list[tuple[int, str | None]] = []  # (status, Retry-After)
        self.refuse: dict[str, tuple[int, str]] = {}  # path -> (status, message)
        self.auth_failures: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.scheme = "http"
        if tls is not None:  # an ssl.SSLContext (server side)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/api"

    def start(self) -> CloudApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        # shutdown() waits for serve_forever() to exit: it blocks forever if that never ran.
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    # -- contract checks ----------------------------------------------------------------
    def _check_auth(self, method: str, path: str, headers, body: bytes) -> str | None:
        if self.auth == "bearer":
            return None if headers.get("Authorization") == f"Bearer {self.token}" \
                else "bad bearer token"
        if self.auth != "hmac":
            return None
        need = ("X-DG-Key-Id", "X-DG-Timestamp", "X-DG-Nonce", "X-DG-Content-SHA256",
                "X-DG-Signature")
        missing = [h for h in need if not headers.get(h)]
        if missing:
            return f"missing {missing}"
        if headers["X-DG-Key-Id"] != self.key_id:
            return "unknown key id"
        if hashlib.sha256(body).hexdigest() != headers["X-DG-Content-SHA256"]:
            return "body hash mismatch"
        ts = headers["X-DG-Timestamp"]
        if not ts.isdigit() or abs(time.time() - int(ts)) > SKEW:
            return "timestamp out of window"
        text = "\n".join((method, path, ts, headers["X-DG-Nonce"],
                          headers["X-DG-Content-SHA256"]))
        want = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, headers["X-DG-Signature"]):
            return "bad signature"
        now = time.time()
        with self.lock:
            self.nonces = {n: t for n, t in self.nonces.items() if now - t < NONCE_TTL}
            if headers["X-DG-Nonce"] in self.nonces:
                return "nonce replayed"
            self.nonces[headers["X-DG-Nonce"]] = now
        return None

    def _apply(self, route: str, body: dict) -> tuple[int, dict]:
        replacing = route == "/deletions" and body.get("reason") == "replaced"
        for field in ("hospitalId", "accessionNo"):
            if not isinstance(body.get(field), str) or not (body[field] or (
                    replacing and field == "accessionNo")):
                return 400, {"code": 400, "message": f"{field}: required string"}
        key = (body["hospitalId"], body["accessionNo"])
        if route == "/reports":
            v = body.get("reportVersion")
            if not isinstance(v, int) or v < 1:
                return 400, {"code": 400, "message": "reportVersion: integer >= 1 expected"}
            held = self.reports.get(key)
            if held and held["reportVersion"] >= v:
                return 200, {"code": 200, "message": f"stale: version {held['reportVersion']} held"}
            self.reports[key] = body
        elif route == "/withdrawals":
            if key not in self.reports:
                self.applied.append({"route": route, "body": body})
                return 200, {"code": 200, "message": "nothing to withdraw"}
            self.reports.pop(key)
        elif route == "/deletions":
            if not body.get("studyInstanceUids") and not body.get("sopInstanceUids"):
                return 400, {"code": 400, "message": "studyInstanceUids or sopInstanceUids"}
            if self.on_delete is not None:
                self.on_delete(list(body.get("studyInstanceUids") or []),
                               list(body.get("sopInstanceUids") or []))
        self.applied.append({"route": route, "body": body})
        return 200, {"code": 200, "message": "ok"}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _reply(self, status: int, body: dict, extra: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _common(self, body: bytes) -> bool:
                with api.lock:
                    api.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers), "body": body})
                    fail = api.fail_next.pop(0) if api.fail_next else None
                if fail:
                    self._reply(fail[0], {"code": fail[0], "message": "busy"},
                                {"Retry-After": fail[1]} if fail[1] else None)
                    return False
                why = api._check_auth(self.command, self.path, self.headers, body)
                if why:
                    api.auth_failures.append(why)
                    self._reply(401, {"code": 401, "message": why})
                    return False
                return True

            def do_GET(self):
                if not self._common(b""):
                    return
                if self.path == "/api/ping":
                    self._reply(200, {"code": 200, "message": "pong"})
                else:
                    self._reply(404, {"code": 404, "message": "no such endpoint"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._common(body):
                    return
                route = self.path.removeprefix("/api")
                if route not in ("/reports", "/withdrawals", "/deletions"):
                    self._reply(404, {"code": 404, "message": "no such endpoint"})
                    return
                key = self.headers.get("Idempotency-Key")
                if not key:
                    self._reply(400, {"code": 400, "message": "Idempotency-Key required"})
                    return
                digest = hashlib.sha256(body).hexdigest()
                with api.lock:
                    if key in api.idem:
                        first_hash, status, reply = api.idem[key]
                        if first_hash != digest:
                            self._reply(422, {"code": 422, "message": "Idempotency-Key "
                                              "reused with a different body"})
                        else:
                            self._reply(status, reply, {"Idempotent-Replayed": "true"})
                        return
                    if route in api.refuse:
                        status, message = api.refuse[route]
                        reply = {"code": status, "message": message}
                    else:
                        try:
                            data = json.loads(body)
                        except ValueError:
                            self._reply(400, {"code": 400, "message": "body: JSON expected"})
                            return
                        status, reply = api._apply(route, data)
                    api.idem[key] = (digest, status, reply)
                self._reply(status, reply)

        return Handler

    def accessions(self) -> set[str]:
        """Accession numbers whose report the cloud holds."""
        with self.lock:
            return {acc for (_hospital, acc) in self.reports}
