"""A test CA with a server certificate (for 127.0.0.1) and a client certificate, by openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
subjectAltName = IP:127.0.0.1
basicConstraints = CA:FALSE
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Path:
    """ca.pem/ca.key, server.pem/server.key, client.pem/client.key in `d`."""
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
