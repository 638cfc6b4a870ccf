"""The offline bundle: built here (network allowed), installed, upgraded and rolled back on a
"host" with no network at all, into a temp prefix with --no-systemd."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.install.bundle_helpers import (
    ROOT,
    Host,
    build_bundle,
    can_isolate,
    dump,
    project_version,
    this_bundle,
    unpack,
)

pytestmark = pytest.mark.skipif(can_isolate() is not None, reason=str(can_isolate()))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return this_bundle(tmp_path_factory)


def releases(host: Host) -> list[str]:
    return sorted(p.name for p in (host.prefix / "releases").iterdir())


def test_bundle_is_complete_and_locked(bundle: Path):
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert bundle.name == f"dicomgate-{project_version()}-linux-x86_64"
    assert manifest["arch"] == "x86_64" and manifest["pythons"] == ["3.11", "3.12", "3.13"]
    wheels = {p.name: p for p in (bundle / "wheels").glob("*.whl")}
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): n for n, p in wheels.items()}
    for py in manifest["pythons"]:
        lines = (bundle / "locks" / f"cp{py.replace('.', '')}.txt").read_text().splitlines()
        names = {line.split("==")[0] for line in lines}
        assert {"dicomgate", "pyodbc", "pydicom", "gmssl", "pillow"} <= names
        for line in lines:  # every pin is a file of the bundle, by hash
            digest = re.search(r"--hash=sha256:([0-9a-f]{64})", line).group(1)
            assert digest in by_hash, line
            assert not re.search(r"aarch64|win|macosx", by_hash[digest]), by_hash[digest]
    for name in ("install.sh", "install_lib.py", "conf/dicomgate.toml",
                 "systemd/dicomgate.service", "docs/README.md", "docs/operations.md"):
        assert (bundle / name).is_file(), name
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bundle,
                          capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr


def test_aarch64_bundle_is_complete(tmp_path: Path):
    """Built here like the x86_64 one; it cannot run on this machine (no aarch64 CPU or
    emulator), so what is checked is that every wheel it pins is there, for aarch64."""
    unpacked = unpack(build_bundle(ROOT, tmp_path / "dist", arch="aarch64"), tmp_path / "u")
    manifest = json.loads((unpacked / "MANIFEST.json").read_text())
    assert manifest["arch"] == "aarch64" and manifest["pythons"] == ["3.11", "3.12", "3.13"]
    binary = [n for n, kind in manifest["wheels"].items() if kind == "binary"]
    assert binary and all("aarch64" in n for n in binary), binary
    assert {n.split("-")[0] for n in binary} >= {"pyodbc", "pillow", "pycryptodomex"}
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=unpacked,
                          capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr


def test_install_upgrade_over_itself_and_roll_back_offline(bundle: Path, tmp_path: Path):
    host = Host(tmp_path)
    r = host.install(bundle)
    assert r.returncode == 0, r.stdout + r.stderr
    first = host.current()
    assert first.parent == host.prefix / "releases"
    assert (host.prefix / "bin" / "dicomgate").resolve() == first / "venv/bin/dicomgate"
    example = (bundle / "conf" / "dicomgate.toml").read_text()
    assert host.config.read_text() == example.replace(
        'state_dir = "/var/lib/dicomgate"', f'state_dir = "{host.state}"')
    v = host.version()
    assert v["version"] == json.loads((bundle / "MANIFEST.json").read_text())["version"]
    assert v["schema"] == {"code": json.loads((bundle / "MANIFEST.json").read_text())
                           ["schema_version"], "store": None}
    assert v["python_path"].startswith(str(first))
    check = host.dicomgate("check-config")
    assert check.returncode == 0 and "config OK" in check.stdout, check.stderr
    assert_unit_verifies(host, tmp_path)

    # The operator edits the config; the gateway runs and records work.
    edited = host.use_sqlite_view(host.config.read_text()).replace(
        'hospital_id = "H33010200001"', 'hospital_id = "H33010299999"')
    assert edited != host.config.read_text()
    host.config.write_text(edited)
    host.seed_state()
    before = dump(host.state / "state.db")
    assert any("install.probe" in line for line in before)

    r = host.install(bundle)  # the same bundle again: an upgrade over itself
    assert r.returncode == 0, r.stdout + r.stderr
    second = host.current()
    assert second != first and len(releases(host)) == 2
    assert (host.prefix / "previous").resolve() == first
    assert host.config.read_text() == edited, "the operator's config was touched"
    assert (host.config.parent / "dicomgate.toml.example").read_text() == example
    assert dump(host.state / "state.db") == before, "state lost in the upgrade"
    backups = list((host.state / "backups").glob("state-before-*.sqlite3"))
    assert len(backups) == 1 and dump(backups[0]) == before
    assert "schema" in r.stdout and "unchanged" in r.stdout
    assert host.version()["schema"]["store"] == host.version()["schema"]["code"]

    r = host.install(bundle, "--rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert host.current() == first
    assert "rolled back" in r.stdout and "state kept as it is" in r.stdout
    assert dump(host.state / "state.db") == before
    assert host.config.read_text() == edited
    assert host.dicomgate("check-config").returncode == 0

    r = host.install(bundle, "--rollback")  # nothing older than the first release
    assert r.returncode == 1 and "no previous release" in r.stderr
    assert host.current() == first


def assert_unit_verifies(host: Host, tmp_path: Path) -> None:
    """The unit install.sh writes (systemd mode) for these paths: systemd's own checker
    accepts it and it runs this prefix's dicomgate. (No systemd runs here to start it.)"""
    r = subprocess.run([host.python(), str(host.current() / "install_lib.py"), "render-unit",
                        str(host.current() / "systemd" / "dicomgate.service"),
                        "--prefix", str(host.prefix), "--config-dir", str(host.config.parent),
                        "--state-dir", str(host.state), "--user", "root"],
                       capture_output=True, text=True, check=True)
    unit = tmp_path / "dicomgate.service"
    unit.write_text(r.stdout)
    assert f"ExecStart={host.prefix}/bin/dicomgate run" in r.stdout
    assert f"ReadWritePaths={host.state}" in r.stdout and "StateDirectory=" not in r.stdout
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                           text=True)
        assert v.returncode == 0, v.stderr


def test_failed_check_config_on_the_new_version_keeps_the_old_one(bundle: Path,
                                                                   tmp_path: Path):
    host = Host(tmp_path)
    assert host.install(bundle).returncode == 0
    first = host.current()
    host.config.write_text(host.use_sqlite_view(host.config.read_text()).replace(
        "port = 11112", "port = 99999"))
    r = host.install(bundle)
    assert r.returncode == 1
    assert "check-config failed" in r.stderr and "dicom.port" in r.stderr
    assert host.current() == first and releases(host) == [first.name]


def test_missing_prerequisites_are_named_and_nothing_changes(bundle: Path, tmp_path: Path):
    old = tmp_path / "python3.8"  # a host whose only Python is too old (Kylin V10)
    old.write_text("#!/bin/sh\necho 3.8\n")
    old.chmod(0o755)
    host = Host(tmp_path / "host")
    r = host.install(bundle, "--python", str(old))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "python3 of version 3.11, 3.12, 3.13" in r.stderr and "(3.8)" in r.stderr
    assert "oci" in r.stderr  # where a host with an old Python gets dicomgate from
    assert not host.prefix.exists() and not host.config.exists()


def test_an_odbc_driver_the_config_names_must_be_installed(bundle: Path, tmp_path: Path):
    host = Host(tmp_path)
    host.config.parent.mkdir()
    example = (bundle / "conf" / "dicomgate.toml").read_text()
    host.config.write_text(example.replace(
        'connection = "DSN=pacs"', 'connection = "Driver={Oracle 19 ODBC driver};DBQ=PACS"'))
    r = host.install(bundle)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "'Oracle 19 ODBC driver'" in r.stderr and "Instant Client" in r.stderr
    assert not host.prefix.exists()
