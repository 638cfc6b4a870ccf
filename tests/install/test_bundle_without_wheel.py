"""A dependency the index has only as source: the bundle builds its wheel here (pure Python:
every target can use it) and locks it like the others."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

from tests.install.bundle_helpers import ROOT, build_bundle, unpack

SKIP = shutil.ignore_patterns(".git", ".venv", "dist", "build", "__pycache__", "*.egg-info",
                              ".pytest_cache", ".ruff_cache", ".hypothesis")


def source_only_package(where: Path) -> Path:
    """dg_probe_pure 1.0 as an sdist only, in a folder pip searches (find-links)."""
    pkg = where / "build" / "dg_probe_pure-1.0"
    (pkg / "dg_probe_pure").mkdir(parents=True)
    (pkg / "dg_probe_pure" / "__init__.py").write_text("VALUE = 1\n")
    (pkg / "setup.py").write_text("from setuptools import setup\n"
                                  "setup(name='dg_probe_pure', version='1.0', "
                                  "packages=['dg_probe_pure'])\n")
    links = where / "links"
    links.mkdir()
    with tarfile.open(links / "dg_probe_pure-1.0.tar.gz", "w:gz") as tar:
        tar.add(pkg, arcname=pkg.name)
    return links


def test_a_source_only_dependency_is_built_and_locked(tmp_path: Path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    cfg = src / "setup.cfg"
    cfg.write_text(cfg.read_text().replace("install_requires =\n",
                                           "install_requires =\n    dg_probe_pure==1.0\n"))
    links = source_only_package(tmp_path)
    find_links = " ".join(filter(None, [os.environ.get("PIP_FIND_LINKS"), str(links)]))
    tarball = build_bundle(src, tmp_path / "dist", "--python", "3.11 3.12",
                           env={"PIP_FIND_LINKS": find_links})
    bundle = unpack(tarball, tmp_path / "unpacked")
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert manifest["pythons"] == ["3.11", "3.12"] and manifest["pythons_missing"] == {}
    assert manifest["wheels"]["dg_probe_pure-1.0-py3-none-any.whl"] == "pure"
    for lock in ("cp311.txt", "cp312.txt"):
        text = (bundle / "locks" / lock).read_text()
        assert re.search(r"^dg-probe-pure==1\.0 --hash=sha256:[0-9a-f]{64}$", text, re.M), text
