"""Fixtures for the self-healing tests: a real Orthanc PACS (knows our Portal AET), a real
Orthanc DICOMweb cloud that does not overwrite (Orthanc's default), the cloud REST server,
and a factory for `dicomgate run` (stopped, and its log checked for JSON, afterwards)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from healing_harness import GW_AET, PACS_AET, Daemon, sigcont

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.sandbox.orthanc import free_port
from tests.support.orthanc import PeerOrthanc as Orthanc


@pytest.fixture
def gw_port() -> int:
    return free_port()


@pytest.fixture
def pacs(tmp_path: Path, gw_port: int):
    o = Orthanc(tmp_path / "pacs", PACS_AET, nagle=True,
                modalities={"gateway": (GW_AET, "127.0.0.1", gw_port)}).start()
    yield o
    sigcont(o)
    o.stop()


@pytest.fixture
def cloud(tmp_path: Path):
    o = Orthanc(tmp_path / "cloud", "CLOUD", dicomweb=True,
                extra={"OverwriteInstances": False}).start()
    yield o
    sigcont(o)
    o.stop()


@pytest.fixture
def api(cloud: Orthanc):
    def remove(studies: list[str], sops: list[str]) -> None:
        for sop in sops:
            cloud.delete_instance(sop)

    server = CloudApi(on_delete=remove).start()
    yield server
    server.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path, gw_port: int, pacs: Orthanc, cloud: Orthanc,
                   api: CloudApi):
    made: list[Daemon] = []

    def make(state_dir: Path | None = None, **over) -> Daemon:
        d = Daemon(tmp_path, state_dir or tmp_path / "state", gw_port, pacs, cloud, api,
                   **over)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
    for d in made:  # every line the daemon and its SCP child wrote is one JSON object
        assert d.not_json() == [], "\n".join(d.not_json()[:20])


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A small file system of its own (tests run as root): for disk-full faults."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], check=True)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
