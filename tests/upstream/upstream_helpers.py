"""Helpers for the upstream tests: a gateway configuration with [upstream], the App built
from it, instances spooled as the images SCP would, and the task queue drained in-thread.
Imported by name (`from upstream_helpers import ...`): pytest puts this folder on sys.path."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pydicom

from dicomgate.app import App
from dicomgate.config import load
from dicomgate.sandbox.orthanc import free_port
from dicomgate.state.kinds import Upload
from dicomgate.state.names import StudyState
from tests.support import gateway_toml, toml_table, write_config
from tests.support.engines import built_app


def upstream_config(state_dir: Path, dicomweb_url: str, api_url: str, **upstream) -> Path:
    """[gateway], [dicom], quick [tasks] retries and an [upstream] section (keywords add to it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return write_config(state_dir.parent / f"{state_dir.name}.toml", (
        gateway_toml(state_dir, free_port())
        + toml_table("tasks", workers=2, backoff_base="1s", backoff_max="5s")
        + toml_table("upstream", dicomweb_url=dicomweb_url, api_url=api_url,
                     confirm_delay="1s", timeout="20s", **upstream)))


def build_app(config_path: Path) -> App:
    config = load(config_path)
    return built_app(config)


def spool(app: App, instances: list[bytes], source: str = "test") -> list[str]:
    """Write Part 10 files into the spool layout and record them, as the images SCP does."""
    spool_dir = app.config.gateway.spool_dir
    uids = []
    for data in instances:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        folder = spool_dir / study / series
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{sop}.dcm"
        tmp = folder / f".{sop}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        app.store.instances.record(
            sop_uid=sop, study_uid=study, series_uid=series, sop_class_uid=ds.SOPClassUID,
            transfer_syntax=ds.file_meta.TransferSyntaxUID, path=str(path), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), source=source)
        uids.append(sop)
    return uids


def complete(app: App, study_uid: str, expected: int) -> None:
    app.store.instances.set_study(study_uid, state=StudyState.COMPLETE, expected_count=expected)


def enqueue_upload(app: App, study_uid: str) -> None:
    app.store.tasks.enqueue(Upload(study_uid), reopen=True, study_uid=study_uid)


def drain(app: App, limit: int = 50) -> list[str]:
    """Run due tasks in this thread; returns the states they ended in."""
    states = []
    for _ in range(limit):
        task = app.store.tasks.claim(app.registry.kinds(), app.pool.owner, 60)
        if task is None:
            break
        states.append(app.pool.run(task))
    return states
