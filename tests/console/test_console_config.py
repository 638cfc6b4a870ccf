"""[console]: parsed once into a frozen ConsoleConfig; every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomgate.config import ConsoleConfig, load
from tests.support import run_cli, write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "dicomgate.toml"
BASE = """
[gateway]
hospital_id = "H1"
state_dir = "/tmp/dicomgate-test-unused"
[dicom]
ae_title = "DICOMGATE"
"""
SHIM = '[shim]\nport = 8080\n'


def test_console_section_loads_typed_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSOLE_TOKEN", "t" * 24)
    cfg = load(write_config(tmp_path / "c.toml", BASE + SHIM + """
[console]
operator_token_env = "CONSOLE_TOKEN"
local_actions = true
refresh = "10s"
language = "en"
"""))
    c = cfg.console
    assert isinstance(c, ConsoleConfig)
    assert c.operator_token.reveal() == "t" * 24 and "tttt" not in repr(c)
    assert (c.local_actions, c.refresh, c.language) == (True, 10.0, "en")
    assert cfg.features()["operator console"] is True


def test_console_defaults_read_only_chinese(tmp_path):
    cfg = load(write_config(tmp_path / "c.toml", BASE + SHIM + "[console]\n"))
    assert cfg.console == ConsoleConfig()
    assert cfg.console.operator_token is None and cfg.console.language == "zh"
    assert load(write_config(tmp_path / "d.toml", BASE + SHIM)).console is None


def test_example_config_has_the_console():
    cfg = load(EXAMPLE)
    assert cfg.console is not None and cfg.console.operator_token is not None


@pytest.mark.parametrize("extra, key", [
    ("[console]\n", "console"),  # no [shim]: nowhere to serve it
    (SHIM + '[console]\noperator_token = "short"', "console.operator_token"),
    (SHIM + '[console]\nrefresh = "200ms"', "console.refresh"),
    (SHIM + '[console]\nlanguage = "fr"', "console.language"),
    (SHIM + '[console]\nlocal_actions = "yes"', "console.local_actions"),
    (SHIM + '[console]\ntoken = "x"', "console.token"),
])
def test_each_bad_console_value_names_its_key(tmp_path, extra, key):
    cfg = write_config(tmp_path / "bad.toml", BASE + extra)
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert any(line.startswith(f"{key}: ") for line in r.stderr.splitlines()), r.stderr
