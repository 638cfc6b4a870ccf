"""Build the offline install bundle: dist/dicomgate-<version>-linux-<arch>.tar.gz.

Runs on a machine that reaches the package registries. Everything the hospital host needs is
inside the bundle: the project's wheel and every dependency as wheels for each supported
CPython and the bundle's architecture, locked with hashes; the installer; conf/, systemd/, the
docs; optionally (--debs) the Debian 12 packages the host needs; optionally (--oci) an OCI
image archive for hosts whose Python is too old. Invoked through scripts/bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from common import BundleError, log, sha256

ROOT = Path(__file__).resolve().parent.parent
ARCHES = ("x86_64", "aarch64")
PYTHONS = ("3.11", "3.12", "3.13")
# Newest glibc a wheel may need: Kylin V10, UOS 20, openEuler 20.03+ and Debian 10+ have 2.28.
# Older hosts (CentOS 7: 2.17) use the OCI image.
GLIBC_MAX = (2, 28)
WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<ver>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-"
                      r"(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def pip(*args: str) -> subprocess.CompletedProcess:
    # The project's own index settings (pip.conf) apply; only binary wheels for the target.
    return run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def platform_tags(arch: str) -> list[str]:
    tags = ["manylinux2014_" + arch] + [f"manylinux_2_{m}_{arch}" for m in
                                        range(17, GLIBC_MAX[1] + 1)]
    if arch == "x86_64":
        tags += ["manylinux1_x86_64", "manylinux2010_x86_64"]
    return tags


def project_version() -> str:
    text = (ROOT / "dicomgate" / "__init__.py").read_text()
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not m:
        raise BundleError("dicomgate/__init__.py has no __version__")
    return m.group(1)


def code_schema_version() -> int:
    sys.path.insert(0, str(ROOT))
    from dicomgate.state.migrations import all_migrations

    return max(v for v, _, _ in all_migrations())


def clean_source(work: Path) -> Path:
    """The tree's files (tracked, and new ones not ignored) in a fresh folder: setuptools
    reuses a build/ folder, and a module deleted since would ship from its stale copy."""
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    r = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"])
    if r.returncode:
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__"))
        return src
    for name in filter(None, r.stdout.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


def build_project_wheel(work: Path) -> Path:
    out = work / "project"
    shutil.rmtree(out, ignore_errors=True)
    r = pip("wheel", "-q", "--no-deps", "-w", str(out), str(clean_source(work)))
    if r.returncode:
        raise BundleError(f"building the project wheel failed:\n{r.stderr[-2000:]}")
    (wheel,) = out.glob("dicomgate-*.whl")
    return wheel


def download_target(wheel: Path, arch: str, py: str, dest: Path, extra_links: list[Path],
                    pins: Path | None, offline: bool = False) -> list[str]:
    """Wheels for one (arch, python) into dest; returns the requirement names pip could not
    find as a wheel (empty when complete). offline: from extra_links only, no index."""
    args = ["download", "-q", "-d", str(dest), "--only-binary=:all:", "--implementation", "cp",
            "--python-version", py, *(["--no-index"] if offline else [])]
    for tag in platform_tags(arch):
        args += ["--platform", tag]
    for link in extra_links:
        args += ["--find-links", str(link)]
    if pins:
        args += ["-c", str(pins)]
    r = pip(*args, str(wheel))
    if r.returncode == 0:
        return []
    missing = re.findall(r"No matching distribution found for (\S+)", r.stderr)
    if not missing:
        raise BundleError(f"pip download for cp{py} {arch} failed:\n{r.stderr[-2000:]}")
    return missing


def build_missing(req: str, work: Path) -> Path | None:
    """A dependency with no wheel on the index: build it here from its sdist. Returns the
    folder holding the wheel if the wheel is pure Python (usable on every target)."""
    out = work / "built"
    out.mkdir(exist_ok=True)
    r = pip("wheel", "-q", "--no-deps", "--no-binary", ":all:", "-w", str(out), req)
    if r.returncode:
        log(f"cannot build {req} from source here: {r.stderr.strip()[-300:]}")
        return None
    for w in out.glob("*.whl"):
        m = WHEEL_RE.match(w.name)
        if m and m["plat"] == "any":
            return out
    return out  # a platform wheel: usable only for this machine's arch and Python


def lock_lines(files: list[Path]) -> list[str]:
    lines = []
    for f in sorted(files, key=lambda p: p.name.lower()):
        m = WHEEL_RE.match(f.name)
        if not m:
            raise BundleError(f"not a wheel: {f.name}")
        name = m["name"].replace("_", "-").lower()
        lines.append(f"{name}=={m['ver']} --hash=sha256:{sha256(f)}")
    return lines


def wheel_kind(name: str) -> str:
    m = WHEEL_RE.match(name)
    return "pure" if m and m["plat"] == "any" else "binary"


def gather_wheels(arch: str, pythons: list[str], wheel: Path, work: Path, pins: Path | None,
                  reuse: Path | None = None
                  ) -> tuple[Path, dict[str, list[str]], dict[str, list[str]]]:
    """Download every target of one arch (reuse: resolve from that bundle's wheels only).
    Returns the wheels folder, the lock lines per Python and what could not be had per
    Python."""
    wheels = work / f"wheels-{arch}"
    wheels.mkdir(parents=True, exist_ok=True)
    locks: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    links: list[Path] = [reuse / "wheels"] if reuse else []
    for py in pythons:
        tag = "cp" + py.replace(".", "")
        dest = work / f"target-{arch}-{tag}"
        shutil.rmtree(dest, ignore_errors=True)
        lacking = download_target(wheel, arch, py, dest, links, pins, offline=reuse is not None)
        if lacking and reuse:
            raise BundleError(f"{tag} {arch}: {', '.join(lacking)} not among the wheels of "
                              f"{reuse}: build without --reuse-wheelhouse")
        for req in lacking:
            log(f"{req}: no wheel for {tag} {arch} on the index; building one here")
            built = build_missing(req, work)
            if built and built not in links:
                links.append(built)
        if lacking:
            shutil.rmtree(dest, ignore_errors=True)
            lacking = download_target(wheel, arch, py, dest, links, pins)
        if lacking:
            missing[py] = lacking
            log(f"{tag} {arch}: no wheel for {', '.join(lacking)}: this Python is left out")
            continue
        files = sorted(dest.glob("*.whl"))
        locks[py] = lock_lines(files)
        for f in files:
            shutil.copy2(f, wheels / f.name)
        log(f"{tag} {arch}: {len(files)} wheels "
            f"({sum(wheel_kind(f.name) == 'binary' for f in files)} binary)")
    return wheels, locks, missing


def reused_bundle(bundle: Path, arch: str) -> Path:
    """An unpacked bundle of `arch` whose wheels are the ones it shipped (its SHA256SUMS):
    the third-party wheels of a build that only changes the project's own wheel."""
    manifest = bundle / "MANIFEST.json"
    if not manifest.is_file():
        raise BundleError(f"--reuse-wheelhouse {bundle}: not an unpacked bundle "
                          "(no MANIFEST.json)")
    built_for = json.loads(manifest.read_text()).get("arch")
    if built_for != arch:
        raise BundleError(f"--reuse-wheelhouse {bundle}: built for {built_for}, not {arch}")
    sums = dict(reversed(line.split("  ", 1)) for line in
                (bundle / "SHA256SUMS").read_text().splitlines() if line)
    for f in sorted((bundle / "wheels").glob("*.whl")):
        if sums.get(f"wheels/{f.name}") != sha256(f):
            raise BundleError(f"--reuse-wheelhouse {bundle}: {f.name} does not match the "
                              "bundle's SHA256SUMS")
    return bundle


def pin_file(locks: dict[str, list[str]], path: Path) -> Path:
    """name==version of the first target, so every other target resolves the same versions."""
    pins = sorted({line.split(" ")[0] for line in next(iter(locks.values()))
                   if not line.startswith("dicomgate==")})
    path.write_text("\n".join(pins) + "\n")
    return path


def bootstrap_pip(work: Path, reuse: Path | None = None) -> Path:
    """pip itself (pure Python): the installer builds the venv --without-pip and runs pip
    from this wheel, so the host needs no ensurepip (Debian's python3-venv)."""
    if reuse:
        (name,) = [line.split("==")[0] for line in
                   (reuse / "locks" / "bootstrap.txt").read_text().splitlines() if line]
        return next((reuse / "wheels").glob(f"{name}-*.whl"))
    out = work / "bootstrap"
    if not list(out.glob("pip-*.whl")):
        r = pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(out),
                "pip>=24,<26")
        if r.returncode:
            raise BundleError(f"downloading pip failed:\n{r.stderr[-1000:]}")
    return next(out.glob("pip-*.whl"))


def assemble(arch: str, version: str, schema: int, wheels: Path, locks: dict[str, list[str]],
             missing: dict[str, list[str]], pip_wheel: Path, stage_root: Path,
             debs: Path | None, pins: Path) -> Path:
    name = f"dicomgate-{version}-linux-{arch}"
    stage = stage_root / name
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "wheels").mkdir(parents=True)
    (stage / "locks").mkdir()
    wanted = {line.split(" ")[0] for lines in locks.values() for line in lines}
    for f in wheels.glob("*.whl"):
        m = WHEEL_RE.match(f.name)
        if m and f"{m['name'].replace('_', '-').lower()}=={m['ver']}" in wanted:
            shutil.copy2(f, stage / "wheels" / f.name)
    shutil.copy2(pip_wheel, stage / "wheels" / pip_wheel.name)
    for py, lines in locks.items():
        (stage / "locks" / f"cp{py.replace('.', '')}.txt").write_text("\n".join(lines) + "\n")
    (stage / "locks" / "bootstrap.txt").write_text("\n".join(lock_lines([pip_wheel])) + "\n")
    # name==version of every dependency: `scripts/bundle --pins locks/pins.txt` rebuilds it
    shutil.copy2(pins, stage / "locks" / "pins.txt")
    shutil.copy2(ROOT / "scripts" / "install.sh", stage / "install.sh")
    shutil.copy2(ROOT / "packaging" / "install_lib.py", stage / "install_lib.py")
    shutil.copytree(ROOT / "conf", stage / "conf")
    shutil.copytree(ROOT / "systemd", stage / "systemd")
    (stage / "docs").mkdir()
    shutil.copy2(ROOT / "README.md", stage / "docs" / "README.md")
    for doc in sorted((ROOT / "docs").glob("*.md")):
        shutil.copy2(doc, stage / "docs" / doc.name)
    if debs is not None:
        shutil.copytree(debs, stage / "debs")
    kinds = {f.name: wheel_kind(f.name) for f in sorted((stage / "wheels").glob("*.whl"))}
    manifest = {
        "name": "dicomgate", "version": version, "arch": arch,
        "schema_version": schema,
        "pythons": sorted(locks), "pythons_missing": missing,
        "glibc_min": ".".join(map(str, needed_glibc(kinds))),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": git_describe(),
        "wheels": kinds,
        "debs": sorted(p.name for p in (stage / "debs").glob("*.deb")) if debs else [],
    }
    (stage / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (stage / "VERSION").write_text(version + "\n")
    sums = [f"{sha256(p)}  {p.relative_to(stage)}" for p in sorted(stage.rglob("*"))
            if p.is_file()]
    (stage / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return stage


def needed_glibc(kinds: dict[str, str]) -> tuple[int, int]:
    need = (2, 17)
    for name in kinds:
        # a wheel carrying several tags runs where the oldest one does
        tags = [(int(a), int(b)) for a, b in re.findall(r"manylinux_(\d+)_(\d+)", name)]
        if "manylinux2014" in name:
            tags.append((2, 17))
        if tags:
            need = max(need, min(tags))
    return need


def git_describe() -> str:
    r = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def tar_reproducibly(src: Path, out: Path) -> None:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or int(time.time())

    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = epoch
        return ti

    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(src, arcname=src.name, filter=norm)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bundle", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=[*ARCHES, "all"], default="all")
    ap.add_argument("--python", dest="pythons", default=" ".join(PYTHONS),
                    help='CPython versions to carry wheels for (default: "%(default)s")')
    ap.add_argument("--debs", action="store_true", help="add the Debian 12 packages the host "
                    "needs (unixODBC, ODBC drivers, CJK font, Python)")
    ap.add_argument("--oci", action="store_true", help="also build the OCI image archive "
                    "(implies --debs: the image installs them)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    ap.add_argument("--work", type=Path, default=None,
                    help="download cache and staging (default: OUT/.work); reused across runs")
    ap.add_argument("--pins", type=Path, help="name==version constraints to reproduce a lock")
    ap.add_argument("--reuse-wheelhouse", type=Path, metavar="BUNDLE",
                    help="an unpacked bundle of the same --arch: build only the project's "
                    "wheel and lock it with that bundle's other wheels (no index; its pins "
                    "unless --pins); for a release that changes no dependency")
    args = ap.parse_args(argv)
    arches = ARCHES if args.arch == "all" else (args.arch,)
    if args.reuse_wheelhouse and (len(arches) > 1 or args.debs or args.oci):
        ap.error("--reuse-wheelhouse takes one --arch and no --debs/--oci")
    pythons = args.pythons.split()
    out = args.out.resolve()
    work = (args.work or out / ".work").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        version, schema = project_version(), code_schema_version()
        started = time.monotonic()
        reuse = (reused_bundle(args.reuse_wheelhouse.resolve(), arches[0])
                 if args.reuse_wheelhouse else None)
        wheel = build_project_wheel(work)
        pip_wheel = bootstrap_pip(work, reuse)
        pins = args.pins or (reuse / "locks" / "pins.txt" if reuse else None)
        for arch in arches:
            wheels, locks, missing = gather_wheels(arch, pythons, wheel, work, pins, reuse)
            if not locks:
                raise BundleError(f"{arch}: no supported Python has every wheel: "
                                  f"{json.dumps(missing)}")
            if pins is None:
                pins = pin_file(locks, work / "pins.txt")
            debs = None
            if args.debs or args.oci:
                from debs import download_debs

                debs = download_debs(arch, work / f"debs-{arch}")
            stage = assemble(arch, version, schema, wheels, locks, missing, pip_wheel,
                             work / "stage", debs, pins)
            target = out / f"{stage.name}.tar.gz"
            tar_reproducibly(stage, target)
            log(f"wrote {target} ({target.stat().st_size // 1024} KiB)")
            if args.oci:
                from oci import build_oci

                image = build_oci(arch, version, stage, work / f"oci-{arch}", out)
                log(f"wrote {image} ({image.stat().st_size // 1024} KiB)")
        log(f"done in {time.monotonic() - started:.0f} s")
    except BundleError as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
