"""An upgrade that changes the state schema, offline: backup, `dicomgate migrate`, switch;
a rollback that restores the backup; a failing migration that leaves the old version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dicomgate.state import SCHEMA_VERSION
from tests.install.bundle_helpers import (
    ROOT,
    Host,
    build_bundle,
    can_isolate,
    dump,
    this_bundle,
    unpack,
)

PROBE = SCHEMA_VERSION + 1  # the later release's extra migration: above every existing one

pytestmark = pytest.mark.skipif(can_isolate() is not None, reason=str(can_isolate()))

SKIP = shutil.ignore_patterns(".git", ".venv", "dist", "__pycache__", "*.egg-info", "build",
                              ".pytest_cache", ".ruff_cache", ".hypothesis")


def next_version(tmp: Path, name: str, version: str, sql: str, old: Path) -> Path:
    """This tree as a later release: `version`, with one more migration (PROBE). Its
    dependencies are this tree's, so the bundle takes them from the `old` bundle and builds
    only the project's wheel (`--reuse-wheelhouse`)."""
    src = tmp / name / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    init = src / "dicomgate" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"',
                           init.read_text()))
    (src / "dicomgate" / "state" / "migrations" / f"m{PROBE}_install_probe.py").write_text(
        f'MIGRATIONS = [({PROBE}, "install_probe", """{sql}""")]\n')
    tarball = build_bundle(src, tmp / name / "dist", "--python", "3.11",
                           "--reuse-wheelhouse", str(old))
    return unpack(tarball, tmp / name / "unpacked")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("schema")
    old = this_bundle(tmp_path_factory)
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two later releases side by side
        new = pool.submit(next_version, tmp, "new", "99.0.0",
                          "CREATE TABLE install_probe (id INTEGER PRIMARY KEY, note TEXT);",
                          old)
        broken = pool.submit(next_version, tmp, "broken", "99.0.1",
                             "CREATE TABLE install_probe (id INTEGER PRIMARY KEY);\n"
                             "INSERT INTO no_such_table VALUES (1);", old)
        return {"old": old, "new": new.result(), "broken": broken.result()}


def installed_with_data(bundle: Path, root: Path) -> tuple[Host, Path, list[str]]:
    host = Host(root)
    r = host.install(bundle)
    assert r.returncode == 0, r.stdout + r.stderr
    host.config.write_text(host.use_sqlite_view(host.config.read_text()))
    host.seed_state()
    return host, host.current(), dump(host.state / "state.db")


def test_upgrade_migrates_and_rollback_restores_the_backup(bundles, tmp_path: Path):
    host, first, before = installed_with_data(bundles["old"], tmp_path)
    old_schema = host.version()["schema"]["code"]
    config = host.config.read_text()

    r = host.install(bundles["new"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"state migrated: schema {old_schema} -> {PROBE}" in r.stdout
    assert host.current() != first
    v = host.version()
    assert v["version"] == "99.0.0" and v["schema"] == {"code": PROBE, "store": PROBE}
    after = dump(host.state / "state.db")
    assert set(before) - set(after) == set(), "rows lost in the migration"
    assert any("install_probe" in line for line in after)
    assert host.config.read_text() == config
    backups = sorted((host.state / "backups").glob("*.sqlite3"))
    assert [b.name for b in backups] == [
        f"state-before-{host.current().name}-schema{old_schema}.sqlite3"]  # one copy, ours
    assert dump(backups[0]) == before
    assert host.dicomgate("status").returncode == 0

    r = host.install(bundles["new"], "--rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert host.current() == first
    assert f"state restored from {backups[0]}" in r.stdout
    assert dump(host.state / "state.db") == before
    safety = list((host.state / "backups").glob(f"state-at-rollback-*-schema{PROBE}.sqlite3"))
    assert len(safety) == 1 and any("install_probe" in line for line in dump(safety[0]))
    # the old version reads its store again (commands refuse a schema they do not know)
    status = host.dicomgate("status")
    assert status.returncode == 0, status.stderr
    assert host.version()["schema"] == {"code": old_schema, "store": old_schema}


def test_a_failing_migration_leaves_the_old_version_and_its_state(bundles, tmp_path: Path):
    host, first, before = installed_with_data(bundles["old"], tmp_path)
    r = host.install(bundles["broken"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "dicomgate migrate failed" in r.stderr and "no_such_table" in r.stderr
    assert host.current() == first
    assert [p.name for p in (host.prefix / "releases").iterdir()] == [first.name]
    assert dump(host.state / "state.db") == before
    assert host.dicomgate("status").returncode == 0


def test_a_daemon_still_running_stops_the_upgrade_before_any_change(bundles, tmp_path: Path):
    """--no-systemd: the installer cannot stop a daemon it did not start; `migrate` refuses
    while one holds the state dir, and the store is left exactly as the daemon has it."""
    host, first, before = installed_with_data(bundles["old"], tmp_path)
    holder = subprocess.Popen(  # the daemon's own lock, taken as `dicomgate run` takes it
        [host.python(), "-c", "import sys, time; from pathlib import Path\n"
         "from dicomgate.daemon_lock import DaemonLock\n"
         "assert DaemonLock(Path(sys.argv[1])).acquire(); print('locked', flush=True)\n"
         "time.sleep(120)", str(host.state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = host.install(bundles["new"])
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "a dicomgate daemon still runs" in r.stderr and "restored" not in r.stderr
    assert host.current() == first
    assert [p.name for p in (host.prefix / "releases").iterdir()] == [first.name]
    assert dump(host.state / "state.db") == before


def test_a_reused_wheelhouse_must_hold_what_its_bundle_shipped(bundles, tmp_path: Path):
    """`--reuse-wheelhouse` takes another bundle's wheels only as its SHA256SUMS lists them."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["old"], copy, copy_function=os.link)
    victim = next(p for p in sorted((copy / "wheels").glob("*.whl"))
                  if not p.name.startswith(("dicomgate-", "pip-")))
    data = victim.read_bytes()
    victim.unlink()  # a hard link to the shared bundle's file: replace it, do not write it
    victim.write_bytes(data + b"\0")
    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "bundle.py"), "--arch",
                        "x86_64", "--out", str(tmp_path / "dist"), "--work",
                        str(tmp_path / "work"), "--reuse-wheelhouse", str(copy)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert f"{victim.name} does not match the bundle's SHA256SUMS" in r.stderr, r.stderr
    assert not list((tmp_path / "dist").glob("*.tar.gz"))
