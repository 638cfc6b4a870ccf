"""Fixtures for the upstream tests: a real Orthanc cloud, the cloud REST server. The helpers
the tests call are in upstream_helpers.py."""

from __future__ import annotations

import pytest

from dicomgate.sandbox.cloud_api import CloudApi
from tests.support.orthanc import PeerOrthanc


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    o = PeerOrthanc(tmp_path_factory.mktemp("cloud"), "CLOUD", dicomweb=True).start()
    yield o
    o.stop()


@pytest.fixture
def fresh_cloud(cloud):
    if not cloud.running():
        cloud.start()
    cloud.clear()
    return cloud


@pytest.fixture
def api():
    server = CloudApi().start()
    yield server
    server.stop()
