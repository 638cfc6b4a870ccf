"""--debs: the Debian 12 packages a host needs, for hosts with no Debian mirror.

apt resolves the dependencies in a private apt state (its own sources, lists and an empty
dpkg status), so any architecture can be fetched from any machine and the build machine's
own apt state is untouched. What every Debian 12 host has (the essential packages and those
of priority required, with what they depend on: mmdebstrap's "required" variant) is left
out; install.sh --install-debs also skips any package the host has at the same or a newer
version (apt would refuse to downgrade).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from common import BundleError, log

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
PACKAGES = ["python3", "unixodbc", "libsqliteodbc", "odbc-postgresql", "odbc-mariadb",
            "fonts-wqy-microhei", "ca-certificates", "tzdata"]
HOST_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")


def _sources() -> Path:
    given = os.environ.get("DICOMGATE_APT_SOURCES")
    for path in ([given] if given else HOST_SOURCES):
        if path and Path(path).is_file():
            return Path(path)
    raise BundleError("--debs needs Debian 12 apt sources: set DICOMGATE_APT_SOURCES")


def _apt_options(root: Path, arch: str) -> list[str]:
    return ["-q", "-o", f"Dir::Etc::SourceList={root}/sources.list",
            "-o", f"Dir::Etc::SourceParts={root}/sources.list.d",
            "-o", f"Dir::State={root}/state", "-o", f"Dir::State::status={root}/status",
            "-o", f"Dir::Cache={root}/cache", "-o", f"APT::Architecture={arch}",
            "-o", f"APT::Architectures::={arch}", "-o", "Dir::Etc::Preferences=/dev/null",
            "-o", "Dir::Etc::PreferencesParts=/dev/null", "-o", "Debug::NoLocking=1",
            "-o", "APT::Install-Recommends=false"]


def _run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if r.returncode:
        raise BundleError(f"{' '.join(cmd[:2])} failed:\n{r.stderr[-1500:]}")
    return r.stdout


def _base_system(opts: list[str]) -> set[str]:
    """Names of the packages every Debian 12 host has: essential or priority required, and
    everything they depend on (as apt would install them on an empty root)."""
    wanted, name = [], ""
    for line in _run(["apt-cache", *opts, "dumpavail"]).splitlines():
        if line.startswith("Package: "):
            name = line.split(" ", 1)[1]
        elif (line in ("Priority: required", "Essential: yes")
              and name not in wanted):
            wanted.append(name)
    sim = _run(["apt-get", *opts, "install", "-s", "-y", *wanted])
    return {line.split()[1] for line in sim.splitlines() if line.startswith("Inst ")}


def download_debs(arch: str, dest: Path) -> Path:
    debarch = DEBIAN_ARCH[arch]
    root = dest.parent / f"apt-{debarch}"
    for d in ("sources.list.d", "state/lists/partial", "cache/archives/partial"):
        (root / d).mkdir(parents=True, exist_ok=True)
    src = _sources()
    (root / "sources.list").write_text("")
    shutil.copy2(src, root / "sources.list.d" / src.name)
    (root / "status").write_text("")
    opts = _apt_options(root, debarch)
    _run(["apt-get", *opts, "update"])
    _run(["apt-get", *opts, "install", "--download-only", "-y", *PACKAGES])
    archives = root / "cache" / "archives"
    base = _base_system(opts)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    kept, left = [], []
    for deb in sorted(archives.glob("*.deb")):
        if deb.name.split("_")[0] in base:
            left.append(deb.name)
            continue
        shutil.copy2(deb, dest / deb.name)
        kept.append(deb.name)
    (dest / "README.txt").write_text(
        f"Debian 12 ({debarch}) packages for a host with no Debian mirror: "
        f"{', '.join(PACKAGES)} and their dependencies.\n"
        "Install them with the bundle's installer (dpkg -i of those the host lacks or has\n"
        "older, offline):\n"
        "  sudo ./install.sh --install-debs\n"
        "Left out (essential or priority required: every Debian 12 host has them):\n  "
        + "\n  ".join(left) + "\n")
    log(f"debs {arch}: {len(kept)} packages "
        f"({sum(p.stat().st_size for p in dest.glob('*.deb')) // 1024} KiB)")
    return dest
