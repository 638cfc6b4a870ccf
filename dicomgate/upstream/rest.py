"""The cloud's REST API for reports and events (contract: docs/upstream-api.md)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from .errors import Refused, Transient
from .transport import Transport

# Idempotency keys are UUIDv5 under this namespace: the same work always gets the same key.
NAMESPACE = uuid.UUID("6f1d2c1e-4b0a-5d8e-9c39-3d0c1f5b7a21")


def idempotency_key(hospital_id: str, kind: str, key: str, discriminator: str = "") -> str:
    return str(uuid.uuid5(NAMESPACE, f"{hospital_id}|{kind}|{key}|{discriminator}"))


@dataclass(frozen=True)
class Reply:
    status: int
    code: int
    message: str
    replayed: bool


class RestClient:
    def __init__(self, transport: Transport, base_url: str):
        self.transport = transport
        self.base = base_url.rstrip("/")

    def post(self, path: str, body: dict[str, Any], idem_key: str) -> Reply:
        """POST JSON; a reply whose `code` is not 200 is an error even under HTTP 200."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        r = self.transport.request(
            "api", "POST", self.base + path, f"POST {path}", data=data,
            headers={"Content-Type": "application/json; charset=utf-8",
                     "Accept": "application/json", "Idempotency-Key": idem_key})
        try:
            reply = r.json()
        except ValueError:
            raise Transient(f"POST {path}: HTTP {r.status_code} but the body is not JSON: "
                            f"{r.text[:200]!r}") from None
        code = reply.get("code") if isinstance(reply, dict) else None
        message = str(reply.get("message", "")) if isinstance(reply, dict) else ""
        if not isinstance(code, int):
            raise Transient(f"POST {path}: reply has no numeric 'code': {r.text[:200]!r}")
        if code >= 500 or code == 429:
            raise Transient(f"POST {path}: cloud code {code}: {message}")
        if code != 200:
            raise Refused(code, message or "no message")
        return Reply(r.status_code, code, message,
                     r.headers.get("Idempotent-Replayed", "").lower() == "true")

    def ping(self) -> None:
        self.transport.request("api", "GET", self.base + "/ping", "GET /ping")
