"""Fixtures for the images tests: a real Orthanc as the hospital PACS, a gateway config on
free loopback ports, and the gateway's own Portal AET started in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from images_helpers import GW_AET, PACS_AET, images_config, start_gateway

from dicomgate.config.load import load
from dicomgate.sandbox.orthanc import Orthanc, free_port
from tests.support.orthanc import PeerOrthanc


@pytest.fixture
def gw_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs_peer(tmp_path_factory: pytest.TempPathFactory):
    """One Orthanc per test module (and xdist worker): starting one per test cost more
    than the tests. Use `pacs`, which empties it first."""
    orthanc = PeerOrthanc(tmp_path_factory.mktemp("pacs"), PACS_AET).start()
    yield orthanc
    orthanc.stop()


@pytest.fixture
def pacs(pacs_peer: PeerOrthanc, gw_port: int) -> PeerOrthanc:
    """The hospital PACS as a test finds it: running, holding nothing, knowing this test's
    Portal AET as its move destination `gateway`. A test may stop it (the next one starts
    it again, knowing the same ports)."""
    if not pacs_peer.running():
        pacs_peer.start()
    pacs_peer.empty()
    pacs_peer.add_modality("gateway", GW_AET, "127.0.0.1", gw_port)
    return pacs_peer


@pytest.fixture
def config_path(tmp_path: Path, gw_port: int, pacs: Orthanc) -> Path:
    return images_config(tmp_path / "dicomgate.toml", state_dir=tmp_path / "state",
                         port=gw_port, pacs_port=pacs.dicom_port)


@pytest.fixture
def gateway(config_path: Path):
    gw = start_gateway(load(config_path))
    yield gw
    gw.scp.stop()
    gw.store.close()
