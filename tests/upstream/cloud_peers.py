"""Clouds that tell what was asked of them: an Orthanc that writes every HTTP request it
gets to a file (its own Lua `IncomingHttpRequestFilter`, so the count is Orthanc's, not
ours), and may refuse an instance as a real archive does; and a loopback proxy in front
of it that answers QIDO-RS UID lists as the servers without list matching do.

Imported by name (`from cloud_peers import ...`): pytest puts this folder on sys.path."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from dicomgate.sandbox.orthanc import request_logging
from tests.support.orthanc import PeerOrthanc


class CountingCloud(PeerOrthanc):
    """The cloud's Orthanc (DICOMweb plugin) with a log of the requests it got."""

    def __init__(self, workdir: Path):
        extra, self.requests_log = request_logging(workdir)
        super().__init__(workdir, "CLOUD", dicomweb=True, extra=extra)

    def requests_seen(self) -> list[tuple[str, str]]:
        """(method, path) of every request since the last `forget_requests`."""
        if not self.requests_log.exists():
            return []
        out = []
        for line in self.requests_log.read_text().splitlines():
            method, _, uri = line.partition(" ")
            out.append((method, uri.split("?", 1)[0]))
        return out

    def forget_requests(self) -> None:
        self.requests_log.write_text("")

    def stow_posts(self) -> int:
        return sum(1 for m, p in self.requests_seen() if m == "POST" and
                   p.startswith("/dicom-web/studies"))

    def qido_gets(self) -> int:
        return sum(1 for m, p in self.requests_seen() if m == "GET" and p.startswith(
            "/dicom-web/") and (p.endswith("/instances") or p.endswith("/studies")))


class NoListMatching:
    """A DICOMweb server without QIDO-RS UID list matching, made of Orthanc and a loopback
    proxy: a StudyInstanceUID holding a comma is answered `reply` ("400": refused as
    servers that take one value do; "literal": matched as one UID, so nothing). Every
    other request goes to Orthanc unchanged."""

    def __init__(self, target: str, reply: str):
        self.target = target.rstrip("/")
        self.reply = reply
        self.lists = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                if any("," in v for v in query.get("StudyInstanceUID", [])):
                    outer.lists += 1
                    if outer.reply == "400":
                        self._answer(400, b'{"message": "StudyInstanceUID takes one UID"}')
                    else:
                        self._answer(200, b"[]")
                    return
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def _forward(self, method: str) -> None:
                body = None
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                r = requests.request(method, outer.target + self.path, data=body,
                                     headers=headers, timeout=60)
                self._answer(r.status_code, r.content, r.headers.get("Content-Type"))

            def _answer(self, code: int, body: bytes,
                        ctype: str | None = "application/dicom+json") -> None:
                self.send_response(code)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def start(self) -> NoListMatching:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
