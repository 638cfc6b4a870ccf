"""The lookup's platforms over TLS: [lookup] takes the same TLS keys as [upstream] and its
sessions come from the one HTTP client factory (dicomgate/http_client.py)."""

from __future__ import annotations

import ssl

from dicomgate.config import load
from dicomgate.sandbox.cloud_api import CloudApi
from dicomgate.shim.lookup import LookupEndpoint
from tests.support import gateway_toml, toml_table, write_config
from tests.support.pki import make_pki


def _endpoint(tmp_path, url: str, **tls) -> LookupEndpoint:
    cfg = load(write_config(tmp_path / "lookup.toml", (
        gateway_toml(tmp_path / "state", 11112)
        + toml_table("lookup", province_dicomweb_url=url, timeout="5s", **tls))))
    return LookupEndpoint(cfg.lookup, None, cfg.gateway.hospital_id)


def test_lookup_trusts_the_configured_ca_bundle(tmp_path):
    pki = make_pki(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server = CloudApi(tls=ctx).start()
    url = server.url.removesuffix("/api") + "/dicom-web"
    try:
        untrusted = _endpoint(tmp_path, url)
        result = untrusted._query("province", url, "330102198001011234")
        assert result.studies is None and "SSLError" in result.error
        untrusted.close()
        trusted = _endpoint(tmp_path, url, ca_bundle=str(pki / "ca.pem"))
        result = trusted._query("province", url, "330102198001011234")
        # The handshake succeeded: the reference server answers 404 for a QIDO-RS path.
        assert result.studies is None and result.error.endswith("HTTP 404"), result.error
        trusted.close()
    finally:
        server.stop()
