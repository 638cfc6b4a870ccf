"""The systemd unit and the example config are what an installer relies on."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(ROOT / "systemd" / "dicomgate.service")
    return cp


def test_unit_is_notify_with_watchdog_restart_and_hardening():
    s = unit()["Service"]
    assert s["Type"] == "notify" and s["WatchdogSec"] and s["Restart"] == "on-failure"
    assert s["User"] == "dicomgate" and s["StateDirectory"] == "dicomgate"
    assert s["ConfigurationDirectory"] == "dicomgate"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == "true", key
    assert s["ProtectSystem"] == "strict" and s["ReadWritePaths"] == "/var/lib/dicomgate"
    assert s["ExecStart"].endswith("dicomgate run")


def test_install_script_uses_the_unit_and_example():
    text = (ROOT / "scripts" / "install.sh").read_text()
    assert "systemd/dicomgate.service" in text and "conf/dicomgate.toml" in text
