"""PACS implementations nobody here wrote, as test peers beside Orthanc:

- DCMTK `dcmqrscp` (HostTable with 127.0.0.1 and `-dhl`: it would otherwise resolve the
  caller to "localhost" and refuse it); loaded with `storescu`.
- pynetdicom's `qrscp` app (`python -m pynetdicom qrscp`), with an ini file of its own;
  loaded with `storescu` too.

Both run as processes of their own on free loopback ports and are stopped by the fixture.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from dicomgate.sandbox.orthanc import free_port


def _wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> bool:
    """True once `proc` listens on `port`; False if it exited (the free port was taken by
    another process meanwhile: several suites share this machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.2)  # someone else's listener would leave ours to exit
                if proc.poll() is None:
                    return True
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def storescu(aet: str, port: int, files: list[Path], *options: str,
             calling: str = "STORESCU") -> subprocess.CompletedProcess:
    """DCMTK storescu: send `files` to aet@127.0.0.1:port, every file's syntax proposed."""
    return subprocess.run(["storescu", "-aet", calling, "-aec", aet, *options, "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True, text=True,
                          timeout=120)


class Peer:
    aet: str
    port: int
    proc: subprocess.Popen | None = None
    name = "PACS"

    def load(self, files: list[Path], *options: str) -> None:
        out = storescu(self.aet, self.port, files, *options)
        if out.returncode != 0:
            raise RuntimeError(f"storescu into {self.name} failed: {out.stderr[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class DcmQrScp(Peer):
    """dcmqrscp 3.6.7. `destinations` are the move destinations {aet: (host, port)};
    `options` go on its command line (e.g. -xs to propose JPEG lossless + uncompressed in
    one context, --require-find, -QS)."""

    name = "dcmqrscp"

    def __init__(self, workdir: Path, aet: str, destinations: dict[str, tuple[str, int]],
                 options: tuple[str, ...] = (), calling_aets: tuple[str, ...] = ()):
        self.workdir, self.aet, self.port = workdir, aet, free_port()
        self.destinations, self.options = destinations, options
        self.calling_aets = calling_aets  # empty: ANY peer may query/retrieve

    def start(self) -> DcmQrScp:
        for _ in range(5):
            if self._start():
                return self
            self.log.close()
            self.port = free_port()
        raise RuntimeError(f"dcmqrscp did not start: see {self.workdir / 'dcmqrscp.log'}")

    def _start(self) -> bool:
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        hosts = [f"{name.lower()} = ({name}, {host}, {port})"
                 for name, (host, port) in self.destinations.items()]
        callers = [f"caller{i} = ({aet}, 127.0.0.1, 1)" for i, aet in
                   enumerate(self.calling_aets)]
        peers = ", ".join(f"caller{i}" for i in range(len(self.calling_aets))) or "ANY"
        cfg = self.workdir / "dcmqrscp.cfg"
        cfg.write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
            "HostTable BEGIN\n" + "\n".join(hosts + callers) + "\nHostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{self.aet} {db} RW (500, 1024mb) {peers}\nAETable END\n")
        self.log = open(self.workdir / "dcmqrscp.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["dcmqrscp", "-dhl", "-c", str(cfg), *self.options],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return _wait_listening(self.port, self.proc, "dcmqrscp")

    def stop(self) -> None:
        super().stop()
        self.log.close()


class QrScp(Peer):
    """pynetdicom's qrscp app, its database and instances under `workdir`."""

    name = "pynetdicom qrscp"

    def __init__(self, workdir: Path, aet: str, destinations: dict[str, tuple[str, int]],
                 max_pdu: int = 16382):
        self.workdir, self.aet, self.port = workdir, aet, free_port()
        self.destinations, self.max_pdu = destinations, max_pdu

    def start(self) -> QrScp:
        for _ in range(5):
            if self._start():
                return self
            self.log.close()
            self.port = free_port()
        raise RuntimeError(f"qrscp did not start: see {self.workdir / 'qrscp.log'}")

    def _start(self) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        dests = "".join(f"\n[{aet}]\n    address: {host}\n    port: {port}\n"
                        for aet, (host, port) in self.destinations.items())
        ini = self.workdir / "qrscp.ini"
        ini.write_text(
            f"[DEFAULT]\n    ae_title: {self.aet}\n    port: {self.port}\n"
            f"    max_pdu: {self.max_pdu}\n    acse_timeout: 30\n    dimse_timeout: 30\n"
            f"    network_timeout: 30\n    bind_address: 127.0.0.1\n"
            f"    instance_location: {self.workdir / 'instances'}\n"
            f"    database_location: {self.workdir / 'instances.sqlite'}\n"
            f"    log_identifier: False\n{dests}")
        self.log = open(self.workdir / "qrscp.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "pynetdicom", "qrscp", "-c",
                                      str(ini)], stdout=self.log, stderr=subprocess.STDOUT)
        return _wait_listening(self.port, self.proc, "qrscp")

    def stop(self) -> None:
        super().stop()
        self.log.close()


def seed_qrscp(peer: QrScp, files: list[Path]) -> None:
    """Put files into qrscp's archive the way its own C-STORE handler does (file in its
    instance directory, row through its db module): for objects no sender would give it,
    such as a private SOP class."""
    import pydicom
    from pynetdicom.apps.qrscp.db import add_instance
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(f"sqlite:///{peer.workdir / 'instances.sqlite'}")
    session = sessionmaker(bind=engine)()
    try:
        for f in files:
            ds = pydicom.dcmread(f)
            target = peer.workdir / "instances" / str(ds.SOPInstanceUID)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
            add_instance(ds, session, str(target))
    finally:
        session.close()
        engine.dispose()
