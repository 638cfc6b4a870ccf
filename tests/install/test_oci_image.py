"""The OCI image archive: built here from Debian's packages and the bundle (no image
registry), then unpacked as a container runtime would and run without network."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.install.bundle_helpers import (
    ROOT,
    build_bundle,
    can_isolate,
    project_version,
    wait_for_prebuilt,
)

reason = can_isolate() or (None if shutil.which("mmdebstrap") else "needs mmdebstrap")
pytestmark = pytest.mark.skipif(reason is not None, reason=str(reason))


def blob(layout: Path, digest: str) -> Path:
    algo, hexdigest = digest.split(":")
    path = layout / "blobs" / algo / hexdigest
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hexdigest, f"{digest} corrupt"
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """(OCI layout, image config, unpacked root filesystem)."""
    arch = platform.machine()
    if prebuilt := os.environ.get("DICOMGATE_TEST_OCI_DIST"):
        # scripts/test started this very build (same command) before pytest, so the three
        # minutes of mmdebstrap and dpkg overlap the rest of the suite
        out = Path(prebuilt)
        wait_for_prebuilt(out)
    else:
        out = tmp_path_factory.mktemp("dist")
        build_bundle(ROOT, out, "--oci", arch=arch)
    (archive,) = out.glob(f"dicomgate-*-oci-{arch}.tar")
    layout = tmp_path_factory.mktemp("layout")
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="tar")
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads(blob(layout, entry["digest"]).read_text())
    config = json.loads(blob(layout, manifest["config"]["digest"]).read_text())
    rootfs = tmp_path_factory.mktemp("rootfs")
    rootfs.chmod(0o755)  # "/" of the container, as a runtime makes it (mktemp gives 0700)
    for layer in manifest["layers"]:  # a runtime unpacks the layers in order
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        with tarfile.open(blob(layout, layer["digest"])) as tar:
            tar.extractall(rootfs, filter="fully_trusted")  # our own layer; owners kept
    return layout, {"index": index, "manifest": manifest, "config": config}, rootfs


def in_image(rootfs: Path, user: str, *args: str) -> subprocess.CompletedProcess:
    """The image's entrypoint in its root filesystem, with no network (unshare -n)."""
    return subprocess.run(["unshare", "-n", "chroot", f"--userspec={user}", str(rootfs),
                           "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
                           "DICOMGATE_CONFIG=/etc/dicomgate/dicomgate.toml", *args],
                          capture_output=True, text=True, timeout=120)


def test_image_layout_and_config(image):
    layout, meta, _ = image
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    (entry,) = meta["index"]["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == \
        f"localhost/dicomgate:{project_version()}"
    cfg = meta["config"]
    assert cfg["architecture"] == {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    c = cfg["config"]
    assert set(c["Volumes"]) == {"/etc/dicomgate", "/var/lib/dicomgate"}
    assert c["Entrypoint"] == ["/opt/dicomgate/bin/dicomgate"] and c["Cmd"] == ["run"]
    assert c["User"] == "990:990"
    # docker load's manifest.json names the same blobs
    (docker,) = json.loads((layout / "manifest.json").read_text())
    assert docker["Config"] == "blobs/sha256/" + meta["manifest"]["config"]["digest"][7:]


def test_image_runs_version_and_check_config_offline(image):
    _, meta, rootfs = image
    entry = meta["config"]["config"]["Entrypoint"]
    r = in_image(rootfs, meta["config"]["config"]["User"], *entry, "version", "--json")
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["platform"] == f"linux-{platform.machine()}"
    assert v["python_path"].startswith("/opt/dicomgate/releases/")
    assert v["schema"]["store"] is None and v["config"]["readable"]
    r = in_image(rootfs, meta["config"]["config"]["User"], *entry, "check-config")
    assert r.returncode == 0 and "config OK: /etc/dicomgate/dicomgate.toml" in r.stdout, \
        r.stderr
    # The ODBC drivers came from the bundle's debs/, installed offline in the image.
    odbcinst = (rootfs / "etc" / "odbcinst.ini").read_text()
    for driver in ("SQLite3", "PostgreSQL Unicode", "MariaDB Unicode"):
        assert f"[{driver}]" in odbcinst, driver
    r = in_image(rootfs, "990:990", "/opt/dicomgate/current/venv/bin/python", "-c",
                 "import pyodbc; print(sorted(pyodbc.drivers()))")
    assert r.returncode == 0 and "SQLite3" in r.stdout, r.stderr
