"""TLS to the cloud: verification with a CA bundle, and a client certificate."""

from __future__ import annotations

import ssl
import time

import pytest
from upstream_helpers import build_app, drain, upstream_config

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.state.kinds import Deletion
from tests.support.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(pki, require_client: bool) -> CloudApi:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.pem")
    return CloudApi(tls=ctx).start()


def _deletion(app) -> None:
    app.store.tasks.enqueue(Deletion("H33010200001", "A1", (), ("1.2.3",), "t", 1))


def test_untrusted_certificate_is_refused_and_retried(tmp_path, pki):
    server = _server(pki, require_client=False)
    try:
        app = build_app(upstream_config(tmp_path / "s", "https://127.0.0.1:9/dw", server.url))
        _deletion(app)
        assert drain(app) == ["pending"]
        task = app.store.tasks.list(kind="deletion")[0]
        assert "TLS failure" in task.last_error and "ca_bundle" in task.last_error
        assert task.run_after > time.time() + 60
        assert server.applied == []
    finally:
        server.stop()


def test_ca_bundle_and_client_certificate(tmp_path, pki):
    server = _server(pki, require_client=True)
    try:
        app = build_app(upstream_config(
            tmp_path / "s", "https://127.0.0.1:9/dw", server.url, ca_bundle=str(pki / "ca.pem"),
            client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key")))
        _deletion(app)
        assert drain(app) == ["done"]
        assert server.applied[-1]["body"]["sopInstanceUids"] == ["1.2.3"]
        # The same server without our client certificate: the handshake fails.
        app2 = build_app(upstream_config(tmp_path / "s2", "https://127.0.0.1:9/dw", server.url,
                                         ca_bundle=str(pki / "ca.pem")))
        _deletion(app2)
        assert drain(app2) == ["pending"]
        assert len(server.applied) == 1
    finally:
        server.stop()
