"""Build a bundle once per session, run its installer offline (a network namespace with no
interface but a down loopback), read the state store as the installed release sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
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
    r = subprocess.run([sys.executable, str(src / "packaging" / "bundle.py"), "--arch", arch,
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


_BUILT: dict[str, Path] = {}


def this_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree's x86_64 bundle, unpacked; built once per session for every module."""
    if "x86_64" not in _BUILT:
        tarball = build_bundle(ROOT, tmp_path_factory.mktemp("dist"))
        _BUILT["x86_64"] = unpack(tarball, tmp_path_factory.mktemp("unpacked"))
    return _BUILT["x86_64"]


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
