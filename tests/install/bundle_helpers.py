"""Build a bundle once per session, run its installer offline (a network namespace with no
interface but a down loopback), read the state store as the installed release sees it."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def project_version() -> str:
    text = (ROOT / "dicomgate" / "__init__.py").read_text()
    return re.search(r'__version__ = "(.+)"', text).group(1)


def can_isolate() -> str | None:
    """Why the offline steps cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root for unshare -n"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"unshare -n refused: {r.stderr.strip()}"


def build_bundle(src: Path, out: Path, *extra: str, arch: str = "x86_64",
                 env: dict[str, str] | None = None) -> Path:
    """scripts/bundle into `out`; its staging beside it (pip's own cache makes a repeated
    download a copy, so nothing is shared with another run but that cache)."""
    # At a low CPU priority (nice 10): the builds use the cores the daemon tests beside them (the
    # same run, other workers) leave idle while they wait on their peers, and yield when those wake.
    r = subprocess.run(["nice", "-n", "10", sys.executable, str(src / "packaging" / "bundle.py"),
                        "--arch", arch,
                        "--out", str(out), "--work", str(out.parent / f"{out.name}-work"),
                        *extra],
                       capture_output=True, text=True, timeout=1500,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-3000:]
    (tarball,) = out.glob(f"dicomgate-*-linux-{arch}.tar.gz")
    return tarball


def unpack(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="tar")
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every pytest-xdist worker of this run shares, and no other run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    return base.parent / f"shared-{run}" if run else base / "shared"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], Path]) -> Path:
    """`build(folder)` run once per test run, whichever worker asks first; the others wait
    for it (a file lock) and get the same result (a path inside the folder)."""
    folder = shared_dir(tmp_path_factory) / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder.parent / f"{name}.done"
        if not done.exists():  # a build that failed left no mark: the next one tries again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(str(build(folder).relative_to(folder)))
        return folder / done.read_text()


def this_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree's x86_64 bundle, unpacked; built once per run for every module and worker."""
    return built_once(tmp_path_factory, "bundle-x86_64",
                      lambda d: unpack(build_bundle(ROOT, d / "dist"), d / "unpacked"))


def wait_for_prebuilt(folder: Path, timeout: float = 1800) -> None:
    """A build `scripts/test` started in the background before pytest (its exit status in
    `rc`, its output in `log`): wait for it, fail with its output if it failed."""
    deadline = time.monotonic() + timeout
    while not (folder / "rc").exists():
        assert time.monotonic() < deadline, f"the build in {folder} did not end in {timeout} s"
        time.sleep(1)
    log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
    assert (folder / "rc").read_text().strip() == "0", log[-3000:]


@dataclass
class Host:
    """An install target inside a temp dir: prefix, config dir, state dir."""

    root: Path

    @property
    def prefix(self) -> Path:
        return self.root / "opt"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "dicomgate.toml"

    @property
    def state(self) -> Path:
        return self.root / "var"

    def use_sqlite_view(self, text: str) -> str:
        """The example's view DSN replaced by the SQLite ODBC driver this machine has."""
        return text.replace('connection = "DSN=pacs"',
                            f'connection = "Driver=SQLite3;Database={self.root}/view.db"')

    def install(self, bundle: Path, *args: str) -> subprocess.CompletedProcess:
        """install.sh with no network at all (unshare -n): what a hospital host has."""
        cmd = ["unshare", "-n", "bash", str(bundle / "install.sh"), "--prefix",
               str(self.prefix), "--config-dir", str(self.config.parent), "--state-dir",
               str(self.state), "--user", "root", "--no-systemd", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    def dicomgate(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["unshare", "-n", str(self.prefix / "bin" / "dicomgate"),
                               "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)

    def version(self) -> dict:
        r = self.dicomgate("version", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def current(self) -> Path:
        return (self.prefix / "current").resolve()

    def python(self) -> str:
        return str(self.current() / "venv" / "bin" / "python")

    def seed_state(self) -> None:
        """Work in the store, written through the installed release's own state layer."""
        code = (
            "import sys; from pathlib import Path\n"
            "from dicomgate.state import Store\n"
            "from dicomgate.state.kinds import Upload\n"
            "s = Store(Path(sys.argv[1]))\n"
            "s.tasks.enqueue(Upload(study_uid='1.2.826.0.1.3680043.8.498.1'))\n"
            "s.watermarks.set('reports.view', '2026-12-01T08:00:00')\n"
            "s.audit.record('test', 'install.probe', 'exam:1', 'ok', {'n': 1})\n"
            "s.close()\n")
        r = subprocess.run([self.python(), "-c", code, str(self.state / "state.db")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr


def dump(db: Path) -> list[str]:
    """Every row of every table, read-only (nothing lost = the same dump)."""
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(c.iterdump())
    finally:
        c.close()
