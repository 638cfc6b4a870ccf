"""The spool on a file system of its own fills up: every file system that receives files
is measured, C-STOREs are refused at the floor (0xA700) or when the disk fills mid-way,
retrieves wait for space (never dead, never blamed on the PACS), /healthz says which file
system is short, and growing it resumes everything by itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from healing_harness import study_at

from dicomgate.state.names import TaskState
from tests.support import run_cli


def _free(fs: Path) -> int:
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize


def _spool_on(tmpfs, state: Path, size: str) -> Path:
    spool = tmpfs(size)
    state.mkdir(mode=0o700)
    (state / "spool").symlink_to(spool)  # the spool lives on its own file system
    return spool


def test_spool_filesystem_full_waits_then_resumes(tmpfs, daemon_factory, pacs, cloud,
                                                  tmp_path: Path):
    studies = [study_at(pacs, f"ACC-SPOOL{n}", 16, rows=256) for n in range(3)]  # 3 x 2 MB
    state = tmp_path / "state"
    spool = _spool_on(tmpfs, state, "4m")
    d = daemon_factory(state_dir=state, min_free_disk="1MB")
    tasks = [d.retrieve(uid) for uid, _ in studies]

    body = d.wait(lambda: (lambda c, b: b if c == 503 and "spool" in
                           (b["checks"].get("storage SCP") or "") else None)(*d.health()),
                  60, "/healthz to say the spool's file system is short")
    assert "min_free_disk" in body["checks"]["storage SCP"]
    assert str(spool) in body["checks"]["storage SCP"] or "spool" in body["checks"][
        "storage SCP"]
    d.wait(lambda: [e for e in d.named("task.waiting") if e["waiting_for"] == "disk space"],
           60, "a retrieve to wait for disk space")
    assert d.named("store.refused")
    assert not d.store.tasks.list(state=TaskState.DEAD)
    status = run_cli("status", config=d.config).stdout
    assert "BELOW, C-STORE refused" in status and f"spool {state / 'spool'}" in status, status
    for e in d.named("task.waiting") + d.named("task.retry"):
        assert "add AE" not in e["error"] and "PACS" not in e["error"].split(":")[0], e

    # hospital IT grows the file system; nobody touches dicomgate
    subprocess.run(["mount", "-o", "remount,size=64m", str(spool)], check=True)
    for (uid, sops), task_id in zip(studies, tasks, strict=True):
        d.wait(lambda uid=uid, sops=sops: cloud.sop_uids(uid) == sops, 120,
               f"all of {uid} in the cloud after the spool grew")
        d.wait(lambda task_id=task_id: d.task(task_id).state == "done", 60,
               "the retrieve task to be done")
    d.wait(lambda: d.health()[0] == 200, 30, "/healthz to be healthy again")
    assert not d.store.tasks.list(state=TaskState.DEAD)
    assert not [e for e in d.events() if e.get("event") in ("thread.crashed",
                                                              "task.worker_died")]
    assert not [line for line in d.lines() if "Traceback" in line]


def test_disk_full_while_receiving_is_refused_not_crashed(tmpfs, daemon_factory, pacs,
                                                          cloud, tmp_path: Path):
    """The floor is tiny, so the spool's file system really fills (ENOSPC) while an
    instance arrives: that C-STORE is refused with 0xA700, the association lives on."""
    uid, sops = study_at(pacs, "ACC-ENOSPC", 20, rows=256)  # 20 x 128 KB
    state = tmp_path / "state"
    spool = _spool_on(tmpfs, state, "1m")
    d = daemon_factory(state_dir=state, min_free_disk="16KB")
    task_id = d.retrieve(uid)
    d.wait(lambda: [e for e in d.named("task.waiting") if e["task_id"] == task_id], 60,
           "the retrieve to wait for disk space")
    refused = d.named("store.refused")
    assert refused and any("disk full" in e["reason"] or "min_free_disk" in e["reason"]
                           for e in refused), refused
    assert not [e for e in d.events() if e.get("event") == "thread.crashed"]
    assert d.task(task_id).state == "pending"
    assert _free(spool) >= 0
    subprocess.run(["mount", "-o", "remount,size=64m", str(spool)], check=True)
    d.wait(lambda: cloud.sop_uids(uid) == sops, 120, "the study in the cloud")
    d.wait(lambda: d.task(task_id).state == "done", 60, "the retrieve task to be done")
    assert not d.store.tasks.list(state=TaskState.DEAD)
