"""Fixtures for the high-availability tests: one throwaway PostgreSQL, a real Orthanc
PACS that knows both nodes' AEs, a real Orthanc DICOMweb cloud, the cloud report API, the
report view (SQLite over unixODBC), and a factory of nodes (stopped afterwards)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.sandbox.orthanc import free_port
from tests.support.orthanc import PeerOrthanc as Orthanc
from tests.support.pg_server import PgServer

sys.path.insert(0, str(Path(__file__).parent))
from ha_harness import Node, add_view_rows  # noqa: E402

AETS = {"gw-a": "DGATE_A", "gw-b": "DGATE_B"}


@pytest.fixture
def pg() -> Iterator[PgServer]:
    server = PgServer()
    yield server
    server.close()


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in AETS}


@pytest.fixture
def pacs(tmp_path: Path, ports: dict[str, int]):
    o = Orthanc(tmp_path / "pacs", "HOSPPACS",
                modalities={name: (aet, "127.0.0.1", ports[name])
                            for name, aet in AETS.items()}).start()
    yield o
    o.stop()


@pytest.fixture
def cloud(tmp_path: Path):
    o = Orthanc(tmp_path / "cloud", "CLOUD", dicomweb=True).start()
    yield o
    o.stop()


@pytest.fixture
def api():
    server = CloudApi().start()
    yield server
    server.stop()


@pytest.fixture
def view_db(tmp_path: Path) -> Path:
    path = tmp_path / "hospital" / "pacs.db"
    path.parent.mkdir()
    add_view_rows(path, [])
    return path


@pytest.fixture
def nodes(tmp_path, pg, pacs, cloud, api, view_db, ports):
    url = pg.new_database()
    made: dict[str, Node] = {name: Node(tmp_path, name, aet, ports[name], url, pacs, cloud,
                                        api, view_db)
                             for name, aet in AETS.items()}
    yield made
    for n in made.values():
        n.stop()
