"""[state] url / url_file / url_env and gateway.node_name: parsed once, the secret kept
secret, mistakes named with their key; without [state] the store stays SQLite."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dicomgate.config import ConfigError
from dicomgate.config.load import parse
from dicomgate.state import PgLocation

BASE = {"gateway": {"hospital_id": "H1", "state_dir": "/tmp/x"},
        "dicom": {"ae_title": "DGATE"}}


def _parse(**extra) -> object:
    raw = {k: dict(v) for k, v in BASE.items()}
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    return parse(raw, Path("/etc/dicomgate/dicomgate.toml"))


def test_without_state_the_store_is_sqlite_in_the_state_dir():
    c = _parse()
    assert c.state is None and c.store_location == Path("/tmp/x/state.db")
    assert c.gateway.node_name == socket.gethostname()


def test_url_from_the_environment_is_a_location_that_never_prints_its_password(monkeypatch):
    monkeypatch.setenv("DG_URL", "postgresql://dg:s3cret@10.1.2.3:5432/dg")
    c = _parse(state={"url_env": "DG_URL"}, gateway={"node_name": "gw-a"})
    where = c.store_location
    assert isinstance(where, PgLocation) and where.node == "gw-a"
    assert where.url.endswith("@10.1.2.3:5432/dg")
    assert "s3cret" not in str(where) + repr(where) + repr(c.state)
    assert str(where) == "postgresql://dg:***@10.1.2.3:5432/dg"


@pytest.mark.parametrize(("extra", "line"), [
    ({"state": {"url": "mysql://x@y/z"}}, "state.url: not a PostgreSQL URL"),
    ({"state": {"url": "postgresql://a@b/c", "url_env": "X"}}, "state.url: given more than once"),
    ({"state": {}}, "state.url: missing"),
    ({"gateway": {"node_name": "gw a/1"}}, "gateway.node_name:"),
])
def test_mistakes_are_named_with_their_key(extra, line):
    with pytest.raises(ConfigError) as got:
        _parse(**extra)
    assert any(p.startswith(line) or line in p for p in got.value.lines), got.value.lines
