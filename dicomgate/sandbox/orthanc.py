"""Start and drive a real Orthanc (Debian package) on loopback: the sandbox PACS or cloud.

Used by the tests, the benchmarks and `dicomgate demo`. Everything lives in one
directory; ports are free ones picked at start.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class SandboxError(Exception):
    pass


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range.

    A port the kernel picked for bind(0) comes from the ephemeral range, which it also hands
    to outgoing connections: on a busy host a client socket can take it before the peer
    (Orthanc, the SCP) binds it. Ports below that range are only ever taken on purpose.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Orthanc runs this for every HTTP request, before its own handlers and the plugins'.
_REQUEST_LOG_LUA = """
function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  local f = io.open("{log}", "a")
  f:write(method .. " " .. uri .. "\\n")
  f:close()
  return true
end
"""


def request_logging(workdir: Path) -> tuple[dict[str, Any], Path]:
    """Configuration (`extra`) that makes an Orthanc append every HTTP request it gets, as
    "METHOD URI", to a file in `workdir`; and that file. The count is Orthanc's own."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, script = workdir / "requests.log", workdir / "count.lua"
    script.write_text(_REQUEST_LOG_LUA.replace("{log}", str(log)))
    return {"LuaScripts": [str(script)]}, log


class Orthanc:
    """One Orthanc process. `modalities` maps a name to (AET, host, port) it may talk to."""

    def __init__(self, workdir: Path, aet: str = "ORTHANC", *, dicomweb: bool = False,
                 modalities: dict[str, tuple[str, str, int]] | None = None,
                 dicomweb_servers: dict[str, str] | None = None,
                 http_port: int | None = None, dicom_port: int | None = None,
                 extra: dict[str, Any] | None = None, nagle: bool = False):
        self.workdir = Path(workdir)
        self.aet = aet
        self.dicomweb = dicomweb
        self.modalities = dict(modalities or {})
        self.dicomweb_servers = dict(dicomweb_servers or {})
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        # Ports picked here may be taken by someone else before Orthanc binds them (a busy
        # machine): the first start then tries fresh ones. Given ports are kept as given.
        self._pick_ports = http_port is None and dicom_port is None
        self.extra = extra or {}
        # True: leave Nagle's algorithm on, as a PACS on a real network is (~40 ms per
        # C-STORE it sends on loopback): a C-MOVE then lasts long enough to interrupt.
        self.nagle = nagle
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        # Orthanc closes idle keep-alive connections; a request on one that just closed
        # fails with RemoteDisconnected. Every call here is idempotent: retry it.
        retry = Retry(total=3, connect=3, read=3, status=0, allowed_methods=None,
                      backoff_factor=0.1)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))

    # -- life cycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "Name": self.aet,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "StorageCompression": False,
            "OverwriteInstances": True,
            "StableAge": 2,
            "ConcurrentJobs": 2,
            "DicomScpTimeout": 30,
            "HttpTimeout": 120,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "Plugins": [DICOMWEB_PLUGIN] if self.dicomweb else [],
        }
        if self.dicomweb:
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                               "Servers": {k: [v] for k, v in self.dicomweb_servers.items()}}
        cfg.update(self.extra)
        return cfg

    def start(self, timeout: float = 30.0) -> Orthanc:
        for attempt in range(3):
            try:
                return self._start(timeout)
            except SandboxError as exc:
                if not (self._pick_ports and "already in use" in str(exc)) or attempt == 2:
                    raise
                self.http_port, self.dicom_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Orthanc:
        if not Path(ORTHANC_BIN).exists():
            raise SandboxError(f"{ORTHANC_BIN} not found: apt-get install orthanc "
                               "orthanc-dicomweb")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        env = dict(os.environ)
        if not self.nagle:
            env["TCP_NODELAY"] = "1"  # else ~40 ms stall per C-STORE received
        log = open(self.workdir / "orthanc.log", "ab")
        self.proc = subprocess.Popen([ORTHANC_BIN, str(cfg_path)], stdout=log,
                                     stderr=subprocess.STDOUT, env=env,
                                     cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                taken = "already in use" in (self.workdir / "orthanc.log").read_text(
                    errors="replace")[-4000:]
                raise SandboxError(f"Orthanc {self.aet} exited at start (code "
                                   f"{self.proc.returncode}"
                                   f"{', a port is already in use' if taken else ''}); "
                                   f"see {self.workdir}/orthanc.log")
            try:
                if self.session.get(f"{self.url}/system", timeout=1).ok:
                    self._pick_ports = False  # restarts keep the ports peers know
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise SandboxError(f"Orthanc {self.aet} did not answer within {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> Orthanc:
        self.stop()
        return self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- REST ---------------------------------------------------------------------------------
    def _check(self, r: requests.Response) -> requests.Response:
        if not r.ok:
            raise SandboxError(f"Orthanc {self.aet} {r.request.method} {r.url}: "
                               f"HTTP {r.status_code} {r.text[:300]}")
        return r

    def get(self, path: str, **kw) -> Any:
        return self._check(self.session.get(self.url + path, timeout=60, **kw)).json()

    def post(self, path: str, body: Any = None, **kw) -> Any:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body or {})
        r = self._check(self.session.post(self.url + path, data=data, timeout=600, **kw))
        return r.json() if r.content else None

    def delete(self, path: str) -> None:
        self._check(self.session.delete(self.url + path, timeout=60))

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store one Part 10 file; returns Orthanc's answer (ID, ParentStudy, Status...)."""
        return self.post("/instances", data, headers={"Content-Type": "application/dicom"})

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        self._check(self.session.put(f"{self.url}/modalities/{name}",
                                     data=json.dumps({"AET": aet, "Host": host, "Port": port}),
                                     timeout=30))
        self.modalities[name] = (aet, host, port)

    def studies(self) -> list[str]:
        return self.get("/studies")

    def study_id(self, study_uid: str) -> str | None:
        found = self.post("/tools/lookup", study_uid)
        for item in found or []:
            if item.get("Type") == "Study":
                return item["ID"]
        return None

    def sop_uids(self, study_uid: str) -> set[str]:
        sid = self.study_id(study_uid)
        if sid is None:
            return set()
        return {i["MainDicomTags"]["SOPInstanceUID"]
                for i in self.get(f"/studies/{sid}/instances")}

    def clear(self) -> None:
        for sid in self.studies():
            self.delete(f"/studies/{sid}")
