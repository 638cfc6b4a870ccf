"""Request authentication for the cloud: none, bearer token, or HMAC-SHA256 signature.

The HMAC contract (docs/upstream-api.md): the string to sign is
    METHOD \\n PATH[?QUERY] \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))
and X-DG-Signature = hex(HMAC-SHA256(secret, string)).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def body_sha256(body: object) -> str:
    if body is None:
        return EMPTY_SHA256
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest()
    digest = getattr(body, "sha256_hex", None)  # a streamed multipart body hashes its files
    if digest is None:
        raise TypeError(f"cannot sign a request body of type {type(body).__name__}")
    return digest()


def string_to_sign(method: str, url: str, timestamp: str, nonce: str, content_sha256: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return "\n".join((method.upper(), path, timestamp, nonce, content_sha256))


def signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class BearerAuth(AuthBase):
    def __init__(self, token: str):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class HmacAuth(AuthBase):
    def __init__(self, key_id: str, secret: str):
        self.key_id = key_id
        self.secret = secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        digest = body_sha256(r.body)
        text = string_to_sign(r.method or "GET", r.url or "", timestamp, nonce, digest)
        r.headers.update({
            "X-DG-Key-Id": self.key_id,
            "X-DG-Timestamp": timestamp,
            "X-DG-Nonce": nonce,
            "X-DG-Content-SHA256": digest,
            "X-DG-Signature": signature(self.secret, text),
        })
        return r
