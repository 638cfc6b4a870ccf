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


def test_build_ships_the_console_page(tmp_path):
    """Hospitals are offline: the console's page, script and style are package data, so a
    build (what a wheel is made of) carries them."""
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"  # a clean copy: no egg-info whose file list would hide a gap
    shutil.copytree(ROOT / "dicomgate", src / "dicomgate",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                        "build_py", "--build-lib", str(tmp_path / "build")], cwd=src,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    static = tmp_path / "build" / "dicomgate" / "console" / "static"
    for f in ("index.html", "console.js", "i18n.js", "console.css"):
        assert (static / f).is_file(), f
