"""A small PACS report API faithful to the contract of SPEC.md 4.1 mode 2.

POST {"startTime","endTime","type"} -> rows whose type time is in [start, end]
(BETWEEN, as a PACS's SQL would do); POST {"accessionNo"} -> that exam's rows.
Answer {"code":200,"message":"成功","data":[...]}. A window longer than
`max_window` is refused with code 413. `fault` switches on one misbehaviour.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TIME_FIELD = {"1": "examTime", "2": "refundTime", "3": "auditTime", "4": "modifyTime"}
FMT = "%Y-%m-%d %H:%M:%S"


class PacsApi:
    def __init__(self):
        self.records: list[dict] = []
        self.max_window: dt.timedelta | None = None
        self.fault: str | None = None  # "code500" | "notjson" | "gbk" | "slow" | "nodata"
        self.requests: list[dict] = []
        self.token: str | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(body)
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._send(401, b'{"code":401,"message":"unauthorized"}')
                status, payload, charset = api.answer(body)
                self._send(status, payload, charset)

            def _send(self, status: int, payload: bytes, charset: str | None = "utf-8"):
                self.send_response(status)
                ctype = "application/json" + (f"; charset={charset}" if charset else "")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/exam/report"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PacsApi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def answer(self, body: dict) -> tuple[int, bytes, str | None]:
        if self.fault == "slow":
            time.sleep(2)
        if self.fault == "code500":
            return 200, _json({"code": 500, "message": "数据库连接失败", "data": None}), "utf-8"
        if self.fault == "notjson":
            return 200, b"<html>Service Unavailable</html>", "utf-8"
        if "accessionNo" in body:
            rows = [r for r in self.records if r.get("accessionNo") == body["accessionNo"]]
        else:
            start = dt.datetime.strptime(body["startTime"], FMT)
            end = dt.datetime.strptime(body["endTime"], FMT)
            if self.max_window and end - start > self.max_window:
                return 200, _json({"code": 413, "message": "查询时间范围过大", "data": []}), \
                    "utf-8"
            field = TIME_FIELD[body["type"]]
            rows = [r for r in self.records if _within(r.get(field), start, end)]
        doc = {"code": 200, "message": "成功", "data": rows}
        if self.fault == "gbk":  # an older PACS: GBK bytes, no charset in the header
            return 200, json.dumps(doc, ensure_ascii=False).encode("gbk"), None
        return 200, _json(doc), "utf-8"


def _within(value, start: dt.datetime, end: dt.datetime) -> bool:
    try:
        return start <= dt.datetime.strptime(value, FMT) <= end
    except (TypeError, ValueError):  # NULL or not a time: no SQL BETWEEN would match it
        return False


def _json(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")
