"""The OCI image archive for hosts whose Python is too old: dist/dicomgate-<v>-oci-<arch>.tar.

A minimal Debian 12 root filesystem made by mmdebstrap from Debian's packages (no image
registry); in it, with no network, the bundle's own installer adds the bundle's Debian
packages (install.sh --install-debs) and then dicomgate (the same wheels, the same layout:
/opt/dicomgate/current, /opt/dicomgate/bin/dicomgate). That root is written as one layer of
an OCI image layout, in a tar that `podman load` and `docker load` read offline. Config and
state are volumes; DICOM needs host networking (systemd/dicomgate-podman.service).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from common import BundleError, log, sha256

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# The host's own Debian 12 sources (whatever mirror it uses); override with DICOMGATE_APT_SOURCES.
HOST_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
UID = 990  # the service user's uid/gid in the image: give the host's volumes this owner
# Left empty in the layer: the runtime mounts these.
EMPTY = {"dev", "proc", "sys", "run", "tmp", "var/cache/apt/archives", "var/lib/apt/lists"}


def apt_sources() -> str:
    given = os.environ.get("DICOMGATE_APT_SOURCES")
    for path in ([given] if given else HOST_SOURCES):
        if path and Path(path).is_file():
            return path
    raise BundleError("no Debian apt sources to build the image from: set "
                      "DICOMGATE_APT_SOURCES to a sources file of a Debian 12 mirror")


def make_rootfs(arch: str, rootfs: Path) -> None:
    if platform.machine() != arch:
        raise BundleError(f"--oci for {arch} must run on an {arch} machine (install.sh runs "
                          f"inside the image's root filesystem); this one is "
                          f"{platform.machine()}")
    if shutil.which("mmdebstrap") is None:
        raise BundleError("--oci needs mmdebstrap (apt install mmdebstrap)")
    shutil.rmtree(rootfs, ignore_errors=True)
    cmd = ["mmdebstrap", "--quiet", "--variant=required", f"--architectures={DEBIAN_ARCH[arch]}",
           "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           "bookworm", str(rootfs), apt_sources()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise BundleError(f"mmdebstrap failed:\n{r.stderr[-2000:]}")


def install_dicomgate(rootfs: Path, stage: Path) -> None:
    """The bundle's installer, run in the image's root filesystem (no systemd there)."""
    inside = rootfs / "tmp" / stage.name
    shutil.copytree(stage, inside)
    with (rootfs / "etc" / "group").open("a") as f:
        f.write(f"dicomgate:x:{UID}:\n")
    with (rootfs / "etc" / "passwd").open("a") as f:
        f.write(f"dicomgate:x:{UID}:{UID}:dicomgate:/var/lib/dicomgate:/usr/sbin/nologin\n")
    # Its own mount namespace for /proc and /dev, and no network: as on a hospital host.
    # mmdebstrap keeps its dpkg path-excludes (no docs, man pages, locales) for these too.
    installer = f"/tmp/{stage.name}/install.sh"
    script = (f'mount -t proc proc "{rootfs}/proc" && mount --rbind /dev "{rootfs}/dev" && '
              f'chroot "{rootfs}" bash {installer} --install-debs && '
              f'exec chroot "{rootfs}" bash {installer} --no-systemd --keep 1')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--net",
                        "sh", "-c", script],
                       capture_output=True, text=True, timeout=900,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    shutil.rmtree(inside)
    if r.returncode:
        raise BundleError(f"install.sh in the image failed:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    # The image carries the example; the volume mounted over /etc/dicomgate brings the real one.
    for leftover in ("dicomgate.toml.example", "dicomgate.toml.new-keys"):
        (rootfs / "etc" / "dicomgate" / leftover).unlink(missing_ok=True)


def write_layer(rootfs: Path, work: Path) -> tuple[Path, str, str]:
    """(gzip blob, its digest, diff_id of the uncompressed tar)."""
    plain = work / "layer.tar"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or int(time.time())

    def keep(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = ti.name.removeprefix("./")
        if any(rel.startswith(e + "/") for e in EMPTY):
            return None
        ti.mtime = min(ti.mtime, epoch)
        return ti

    with tarfile.open(plain, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(rootfs / entry, arcname=entry, filter=keep)
    diff_id = sha256(plain)
    blob = work / "layer.tar.gz"
    with plain.open("rb") as src, gzip.GzipFile(blob, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain.unlink()
    return blob, sha256(blob), diff_id


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return digest, len(data)


def image_config(arch: str, version: str, diff_id: str) -> dict:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "architecture": DEBIAN_ARCH[arch], "os": "linux", "created": created,
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": ["/opt/dicomgate/bin/dicomgate"],
            "Cmd": ["run"],
            "Env": ["PATH=/opt/dicomgate/bin:/usr/local/bin:/usr/bin:/bin",
                    "DICOMGATE_CONFIG=/etc/dicomgate/dicomgate.toml", "LANG=C.UTF-8"],
            "WorkingDir": "/var/lib/dicomgate",
            "Volumes": {"/etc/dicomgate": {}, "/var/lib/dicomgate": {}},
            "StopSignal": "SIGTERM",
            "Labels": {"org.opencontainers.image.title": "dicomgate",
                       "org.opencontainers.image.version": version,
                       "org.opencontainers.image.description":
                           "hospital-side gateway of the imaging cloud; run with host "
                           "networking, /etc/dicomgate and /var/lib/dicomgate as volumes"},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "scripts/bundle --oci: mmdebstrap "
                     "bookworm, then the bundle's install.sh --no-systemd"}],
    }


def write_layout(arch: str, version: str, blob: Path, blob_digest: str, diff_id: str,
                 layout: Path) -> None:
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layer_size = blob.stat().st_size
    shutil.move(blob, layout / "blobs" / "sha256" / blob_digest)
    cfg_digest, cfg_size = _blob(layout, json.dumps(image_config(arch, version, diff_id),
                                                    indent=1).encode())
    ref = f"localhost/dicomgate:{version}"
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{cfg_digest}", "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{blob_digest}", "size": layer_size}],
    }
    m_digest, m_size = _blob(layout, json.dumps(manifest, indent=1).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": f"sha256:{m_digest}", "size": m_size,
                            "platform": {"architecture": DEBIAN_ARCH[arch], "os": "linux"},
                            "annotations": {"org.opencontainers.image.ref.name": ref,
                                            "io.containerd.image.name": ref}}]}
    (layout / "index.json").write_text(json.dumps(index, indent=1))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    # docker load (before OCI archives) reads manifest.json; the blobs are shared.
    (layout / "manifest.json").write_text(json.dumps([{
        "Config": f"blobs/sha256/{cfg_digest}", "RepoTags": [ref],
        "Layers": [f"blobs/sha256/{blob_digest}"]}]))


def build_oci(arch: str, version: str, stage: Path, work: Path, out: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    rootfs = work / "rootfs"
    started = time.monotonic()
    make_rootfs(arch, rootfs)
    log(f"oci {arch}: root filesystem in {time.monotonic() - started:.0f} s")
    install_dicomgate(rootfs, stage)
    blob, digest, diff_id = write_layer(rootfs, work)
    shutil.rmtree(rootfs)
    layout = work / "layout"
    write_layout(arch, version, blob, digest, diff_id, layout)
    target = out / f"dicomgate-{version}-oci-{arch}.tar"
    tmp = target.with_suffix(".part")
    with tarfile.open(tmp, "w") as tar:  # the layer is compressed already
        for entry in sorted(os.listdir(layout)):
            tar.add(layout / entry, arcname=entry)
    tmp.replace(target)
    shutil.rmtree(layout)
    log(f"oci {arch}: image in {time.monotonic() - started:.0f} s")
    return target
