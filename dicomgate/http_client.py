"""The one way dicomgate makes outgoing HTTP sessions: TLS, CA bundle, client certificate,
authentication, no proxy surprises. Upstream (the cloud) and the shim's cross-hospital lookup
(the province / national platforms) both build their sessions here."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .config.model import Secret
from .http_auth import BearerAuth, HmacAuth

SEND_BLOCK = 1024 * 1024  # urllib3 reads request bodies in 16 KB blocks by default


class ClientSettings(Protocol):
    """The configuration keys a section with outgoing HTTP carries ([upstream], [lookup]);
    read-only, as the frozen config objects are."""

    @property
    def auth(self) -> str: ...
    @property
    def token(self) -> Secret | None: ...
    @property
    def hmac_key_id(self) -> str: ...
    @property
    def hmac_secret(self) -> Secret | None: ...
    @property
    def verify_tls(self) -> bool: ...
    @property
    def ca_bundle(self) -> Path | None: ...
    @property
    def client_cert(self) -> Path | None: ...
    @property
    def client_key(self) -> Path | None: ...


class _Adapter(HTTPAdapter):
    """Bigger send blocks: a 32 MB STOW body in 32 reads instead of 2000."""

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("blocksize", SEND_BLOCK)
        super().init_poolmanager(*args, **kw)


def request_auth(cfg: ClientSettings, hospital_id: str) -> requests.auth.AuthBase | None:
    if cfg.auth == "bearer" and cfg.token is not None:
        return BearerAuth(cfg.token.reveal())
    if cfg.auth == "hmac" and cfg.hmac_secret is not None:
        return HmacAuth(cfg.hmac_key_id or hospital_id, cfg.hmac_secret.reveal())
    return None


def new_session(cfg: ClientSettings, hospital_id: str, pool_size: int = 2) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy or netrc surprises from the service environment
    s.verify = str(cfg.ca_bundle) if cfg.verify_tls and cfg.ca_bundle else cfg.verify_tls
    if cfg.client_cert:
        s.cert = (str(cfg.client_cert), str(cfg.client_key)) if cfg.client_key \
            else str(cfg.client_cert)
    s.auth = request_auth(cfg, hospital_id)
    s.headers["User-Agent"] = f"dicomgate/{__version__}"
    adapter = _Adapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


class ThreadSessions:
    """One session per thread (a requests.Session is not meant to be shared by threads)."""

    def __init__(self, cfg: ClientSettings, hospital_id: str):
        self.cfg = cfg
        self.hospital_id = hospital_id
        self._local = threading.local()

    def get(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = new_session(self.cfg, self.hospital_id)
        return s
