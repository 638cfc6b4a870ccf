"""Issue 14, point 8: messages say what happened. A connection the cloud dropped mid-request
is not "cannot connect" (real sockets on loopback)."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from dicomgate.sandbox.orthanc import free_port
from dicomgate.upstream.errors import from_exception


def _drop_after_request() -> tuple[int, threading.Thread]:
    """A peer that accepts, reads the request, and closes without an answer."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t


def _error(url: str) -> str:
    with pytest.raises(requests.RequestException) as err:
        requests.post(url, data=b"{}", timeout=5)
    return str(from_exception(err.value, "STOW-RS"))


def test_dropped_mid_request_is_not_cannot_connect():
    port, t = _drop_after_request()
    text = _error(f"http://127.0.0.1:{port}/studies")
    t.join(5)
    assert "dropped during the request" in text and "cannot connect" not in text


def test_refused_connection_is_cannot_connect():
    text = _error(f"http://127.0.0.1:{free_port()}/studies")  # nobody listens there
    assert "cannot connect" in text and "dropped" not in text
