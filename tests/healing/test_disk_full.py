"""Issue 14, point 5: the disk really full (ENOSPC, a small tmpfs) pauses work with a clear
reason on /healthz; no worker thread dies; work resumes by itself once space returns."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state.names import TaskState


def _fill(fs: Path) -> Path:
    """Write until the file system refuses (ENOSPC), 4 KB at the end."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        for block in (1024 * 1024, 4096):
            chunk = b"\0" * block
            while True:
                try:
                    f.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    assert os.statvfs(fs).f_bavail == 0
    return filler


@pytest.mark.sqlite_only  # the store itself on the file system that fills
def test_enospc_pauses_workers_and_resumes(tmpfs, daemon_factory, cloud, tmp_path: Path):
    fs = tmpfs("40M")
    d = daemon_factory(state_dir=fs / "state", workers=2)
    spec = StudySpec(accession="ACC-FULL")
    data = ct_instances(spec, series=1, per_series=6)
    paths = []
    for i, blob in enumerate(data):
        p = tmp_path / f"i{i}.dcm"
        p.write_bytes(blob)
        paths.append(p)
    cloud.stop()  # uploads wait meanwhile
    d.storescu(paths)
    filler = _fill(fs)
    cloud.start()

    body = d.wait(lambda: (lambda c, b: b if c == 503 and "full" in
                           (b["checks"].get("workers") or "") else None)(*d.health()),
                  60, "/healthz to report work paused on a full disk")
    assert "free space there" in body["checks"]["workers"]
    assert body["workers"]["alive"] == body["workers"]["started"] > 0
    assert d.named("tasks.paused")
    assert d.proc.poll() is None

    filler.unlink()
    want = {sop_uid_of(b) for b in data}
    d.wait(lambda: cloud.sop_uids(spec.study_uid) == want, 60,
           "the instances in the cloud after space returned")
    d.wait(lambda: d.health()[1]["checks"].get("workers") == "ok", 30,
           "work to resume on /healthz")
    assert d.named("tasks.resumed")
    assert not d.store.tasks.list(state=TaskState.DEAD)
    _, body = d.health()
    assert body["workers"]["alive"] == body["workers"]["started"]
    assert not [e for e in d.events() if e.get("event") in ("thread.crashed",
                                                              "task.worker_died")]


@pytest.mark.sqlite_only  # the store itself on the file system that fills
def test_outcome_recorded_after_the_disk_frees(tmpfs):
    """The disk fills while a task runs: its outcome cannot be written; the worker keeps
    it, pauses (lease renewed, no other claim), and records it once space returns."""
    import time

    from dicomgate.config import TasksConfig
    from dicomgate.state import Store
    from dicomgate.state.kinds import Upload
    from dicomgate.tasks import Registry, WorkerPool

    fs = tmpfs("8M")
    store = Store(fs / "state.db")
    filled: list[Path] = []

    def fill_then_succeed(_work, _task) -> str:
        filled.append(_fill(fs))
        return "ran while the disk filled up"

    registry = Registry()
    registry.register("upload", fill_then_succeed)
    pool = WorkerPool(store, registry, TasksConfig(workers=1, lease=30), owner="test")
    first = store.tasks.enqueue(Upload("1.2.3.1")).id
    store.tasks.enqueue(Upload("1.2.3.2"))
    pool.start()
    try:
        deadline = time.monotonic() + 20
        while pool.health() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.health() and "full" in pool.health()
        assert pool.alive() == (1, 1)
        time.sleep(1.5)
        assert store.tasks.get(first).state == "running"  # kept, not lost, not re-run
        assert len(filled) == 1  # paused: the second task was not claimed meanwhile
        filled[0].unlink()
        deadline = time.monotonic() + 60
        while store.tasks.counts().get("upload", {}).get("done", 0) < 2:
            assert time.monotonic() < deadline, store.tasks.counts()
            if len(filled) > 1:  # the second run filled the disk again: free it
                filled.pop().unlink(missing_ok=True)
            time.sleep(0.1)
        assert store.tasks.get(first).result == "ran while the disk filled up"
        assert pool.health() is None and pool.alive() == (1, 1)
    finally:
        pool.stop(grace=2)
        store.close()


def test_stale_temp_files_in_incoming_are_removed(tmp_path: Path):
    """A write interrupted by a full disk leaves a partial temp file; the periodic cleanup
    removes what nobody has written to for an hour, and leaves files being written."""
    import time

    from dicomgate.images.feature import STALE_TEMP_AGE, clean_incoming
    from dicomgate.images.spool import Spool

    spool = Spool(tmp_path / "state")
    stale = spool.temp_path()
    stale.write_bytes(b"\0" * 1000)
    old = time.time() - STALE_TEMP_AGE - 60
    os.utime(stale, (old, old))
    fresh = spool.temp_path()
    fresh.write_bytes(b"\0" * 10)
    assert clean_incoming(spool) == "1 stale temp files removed"
    assert not stale.exists() and fresh.exists()
