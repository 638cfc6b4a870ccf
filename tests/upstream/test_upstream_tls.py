"""TLS to the cloud: verification with a CA bundle, and a client certificate."""

from __future__ import annotations

import ssl
import subprocess
import time

import pytest
from conftest import build_app, drain, write_config

from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.state.kinds import Deletion

CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
subjectAltName = IP:127.0.0.1
basicConstraints = CA:FALSE
"""


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=Test Cloud CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name in ("server", "client"):
        (d / f"{name}.cnf").write_text(CNF.format(cn=name))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-config", f"{name}.cnf", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.cnf", "-extensions",
                 "ext", "-out", f"{name}.pem", cwd=d)
    return d


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
        app = build_app(write_config(tmp_path / "s", "https://127.0.0.1:9/dw", server.url))
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
        app = build_app(write_config(
            tmp_path / "s", "https://127.0.0.1:9/dw", server.url, ca_bundle=str(pki / "ca.pem"),
            client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key")))
        _deletion(app)
        assert drain(app) == ["done"]
        assert server.applied[-1]["body"]["sopInstanceUids"] == ["1.2.3"]
        # The same server without our client certificate: the handshake fails.
        app2 = build_app(write_config(tmp_path / "s2", "https://127.0.0.1:9/dw", server.url,
                                      ca_bundle=str(pki / "ca.pem")))
        _deletion(app2)
        assert drain(app2) == ["pending"]
        assert len(server.applied) == 1
    finally:
        server.stop()
