"""Shared shim test helpers and fixtures (imported by conftest.py): the real `dicomgate run`
Orthanc + DICOMweb servers as the provincial and national platforms."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from dicomgate.sandbox.orthanc import free_port
from tests.support import gateway_toml, start_daemon, stop_daemon, toml_table, write_config
from tests.support.engines import open_store
from tests.support.orthanc import PeerOrthanc as Orthanc

SM4_KEY = "0123456789abcdeffedcba9876543210"
SM2_KEY = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
DELETE_SECRET = "s3cret-for-deletion-signing"
HOSPITAL = "H33010200001"
GROUP_HOSPITAL = "H33010200002"  # a second institution code of the same hospital group
FILM_URL = "http://wx.imagingunion.com/iuweixin/iu_scanFilmInfo"


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout}s")


@dataclass
class Shim:
    base: str
    port: int
    config: Path
    state_dir: Path
    log: Path
    proc: subprocess.Popen

    def get(self, path: str, **params) -> dict:
        r = requests.get(self.base + path, params=params, timeout=10)
        return {"http": r.status_code, **r.json()}

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            source: str | None = None) -> tuple[int, dict]:
        """Exactly these bytes on the wire (no client-side re-encoding)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, json.loads(r.read().decode("utf-8"))
        finally:
            conn.close()

    def post_signed(self, path: str, payload: dict, secret: str = DELETE_SECRET,
                    form: bool = False, query: str = "") -> tuple[int, dict]:
        if form:
            from urllib.parse import urlencode
            body = urlencode(payload).encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            body = json.dumps(payload, ensure_ascii=False).encode()
            ctype = "application/json"
        ts = str(int(time.time()))
        sig = sign(secret, ts, "POST", path, query, body)
        return self.raw("POST", path + (f"?{query}" if query else ""), body,
                        {"Content-Type": ctype,
                                             "X-Dicomgate-Timestamp": ts,
                                             "X-Dicomgate-Signature": sig})

    def store(self):
        return open_store(self.state_dir)


def sign(secret: str, ts: str, method: str, path: str, query: str, body: bytes) -> str:
    """The documented deletion signature (docs/operations.md), written out independently of
    the gateway's code: HMAC-SHA256 over timestamp, method, path, canonical query (pairs
    percent-decoded, re-encoded keeping only A-Z a-z 0-9 - _ . ~, sorted) and body."""
    from urllib.parse import quote, unquote_to_bytes
    pairs = sorted(tuple(quote(unquote_to_bytes(x), safe="-_.~") for x in p.partition("=")[::2])
                   for p in query.split("&") if p)
    canonical = "&".join(f"{k}={v}" for k, v in pairs)
    text = f"{ts}\n{method}\n{path}\n{canonical}\n".encode() + body
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def shim_config(tmp: Path, port: int, province: str, national: str,
                allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128"), **shim: object) -> Path:
    """Every shim endpoint on `port`; the lookup asks `province` and `national`; more [shim]
    keys as keywords."""
    return write_config(tmp / "dicomgate.toml", (
        gateway_toml(tmp / "state", free_port(), hospital_id=HOSPITAL,
                     gateway={"group_hospital_ids": [GROUP_HOSPITAL]})
        + toml_table("shim", bind="127.0.0.1", port=port, allow=list(allow),
                     delete_secret=DELETE_SECRET, max_body="64KB", **shim)
        + toml_table("qr", film_url=FILM_URL, sm4_key=SM4_KEY)
        + toml_table("login", sm2_private_key=SM2_KEY, sm2_mode="C1C3C2", session_ttl="1h")
        + toml_table("lookup", province_dicomweb_url=province, national_dicomweb_url=national,
                     timeout="2s")
        + toml_table("log", format="json")))


def start_shim(tmp: Path, province: str, national: str, **config_over) -> Shim:
    port = free_port()
    config = shim_config(tmp, port, province, national, **config_over)
    log = tmp / "daemon.log"
    proc = start_daemon(config, log)
    shim = Shim(f"http://127.0.0.1:{port}", port, config, tmp / "state", log, proc)
    try:
        wait_http(shim.base + "/openapi.json", proc, "dicomgate run")
    except RuntimeError:
        stop_daemon(proc)
        raise RuntimeError(log.read_text()) from None
    return shim


@pytest.fixture(scope="session")
def shim(tmp_path_factory) -> Iterator[Shim]:
    """The general-purpose daemon; its lookup platforms are closed ports."""
    tmp = tmp_path_factory.mktemp("shim")
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    s = start_shim(tmp, dead, dead)
    yield s
    stop_daemon(s.proc)


# --- Orthanc ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def orthanc_pair(tmp_path_factory) -> Iterator[tuple[Orthanc, Orthanc]]:
    tmp = tmp_path_factory.mktemp("orthanc")
    province = Orthanc(tmp / "province", "PROVINCE", dicomweb=True).start()
    try:
        national = Orthanc(tmp / "national", "NATIONAL", dicomweb=True).start()
    except Exception:
        province.stop()
        raise
    yield province, national
    province.stop()
    national.stop()
    shutil.rmtree(tmp, ignore_errors=True)
