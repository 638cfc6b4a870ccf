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


@pytest.fixture
def pacs(tmp_path: Path, gw_port: int):
    orthanc = PeerOrthanc(tmp_path / "pacs", PACS_AET,
                          modalities={"gateway": (GW_AET, "127.0.0.1", gw_port)}).start()
    yield orthanc
    orthanc.stop()


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
