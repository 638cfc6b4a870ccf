"""Mode 2: the PACS report HTTP API (SPEC.md 4.1 mode 2).

POST {"startTime","endTime","type"} or {"accessionNo"}; the answer is
{"code":200,"message":...,"data":[record, ...]}. A window the PACS refuses as too
large (HTTP 413, or code 413, or a message saying so) is asked again in halves.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import requests
import structlog

from ..config.model import ReportsHttpConfig
from ..privacy import mask_text
from .events import EventType
from .source import Row, SourceError

log = structlog.get_logger("dicomgate.reports.http")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MIN_WINDOW = dt.timedelta(minutes=1)  # below this, a "too large" answer is an error
_TOO_LARGE_RE = re.compile(r"too (large|long|many|big)|过大|过多|过长|超过|超出", re.I)


class WindowTooLarge(SourceError):
    pass


class HttpSource:
    name = "http"

    def __init__(self, config: ReportsHttpConfig):
        self.config = config
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if config.token is not None:
            self.session.headers["Authorization"] = f"Bearer {config.token.reveal()}"

    def close(self) -> None:
        self.session.close()

    def window(self, event: EventType, start: dt.datetime, end: dt.datetime
               ) -> Iterator[list[Row]]:
        body = {"startTime": start.strftime(TIME_FORMAT), "endTime": end.strftime(TIME_FORMAT),
                "type": str(event.code)}
        try:
            yield self._post(body)
        except WindowTooLarge:
            if end - start <= MIN_WINDOW:
                raise
            middle = (start + (end - start) / 2).replace(microsecond=0)
            log.info("reports.http_window_split", type=event.code,
                     start=body["startTime"], end=body["endTime"])
            yield from self.window(event, start, middle)
            yield from self.window(event, middle, end)

    def accession(self, accession_no: str) -> list[Row]:
        return self._post({"accessionNo": accession_no})

    def _post(self, body: dict[str, str]) -> list[Row]:
        url = self.config.url
        try:
            resp = self.session.post(url, json=body, timeout=self.config.timeout)
        except requests.Timeout:
            raise SourceError(f"PACS report API {url} did not answer within "
                              f"{self.config.timeout:g}s (reports.http.timeout)") from None
        except requests.RequestException as exc:
            raise SourceError(f"PACS report API {url} unreachable: {exc}") from None
        if resp.status_code == 413:
            raise WindowTooLarge(f"PACS report API {url} refused the window as too large")
        if resp.status_code != 200:
            raise SourceError(f"PACS report API {url} answered HTTP {resp.status_code} "
                              f"{resp.reason}: {mask_text(_snippet(_decode(resp)))}")
        return _records(url, _decode(resp))


def _decode(resp: requests.Response) -> str:
    """The body as text: the declared charset, else UTF-8, else GB18030 (GBK)."""
    declared = requests.utils.get_encoding_from_headers(resp.headers)
    if declared and declared.lower() != "iso-8859-1":  # requests' default for text/*
        try:
            return resp.content.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return resp.content.decode("utf-8")
    except UnicodeDecodeError:
        return resp.content.decode("gb18030", errors="replace")


def _records(url: str, text: str) -> list[Row]:
    try:
        doc = json.loads(text)
    except ValueError:
        raise SourceError(f"PACS report API {url} sent a body that is not JSON: "
                          f"{mask_text(_snippet(text))} (expected {{\"code\":200,\"message\":...,"
                          "\"data\":[...]})") from None
    if not isinstance(doc, dict) or "code" not in doc:
        raise SourceError(f"PACS report API {url} sent JSON without \"code\": "
                          f"{mask_text(_snippet(text))}"
                          " (expected {\"code\":200,\"message\":...,\"data\":[...]})")
    code, message = str(doc.get("code")), str(doc.get("message") or "")
    if code == "413" or (code != "200" and _TOO_LARGE_RE.search(message)):
        raise WindowTooLarge(f"PACS report API {url} refused the window: {message}")
    if code != "200":
        raise SourceError(f"PACS report API {url} answered code {code}: "
                          f"{message or '(no message)'} (expected code 200)")
    data = doc.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise SourceError(f"PACS report API {url}: \"data\" is {type(data).__name__}, "
                          "expected a list of exam records")
    bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
    if bad is not None:
        raise SourceError(f"PACS report API {url}: data[{bad}] is "
                          f"{type(data[bad]).__name__}, expected an exam record object")
    return data


def _snippet(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 200 else text[:197] + "..."
