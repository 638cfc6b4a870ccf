"""Issue 14, points 1, 2, 4, 6: faults during a C-MOVE end with the study delivered and no
manual step. The daemon, the PACS and the cloud are real; faults are injected from outside
(SIGKILL, a full tmpfs, a stopped PACS, SIGSTOP)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from healing_harness import sigcont, sigstop, study_at

from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state.names import TaskState
from tests.support import run_cli


def _delivered(daemon, cloud, study_uid: str, sops: set[str], task_id: int,
               timeout: float = 90) -> None:
    daemon.wait(lambda: cloud.sop_uids(study_uid) == sops, timeout,
                f"all {len(sops)} instances of {study_uid} in the cloud")
    daemon.wait(lambda: (daemon.store.instances.study(study_uid) or {}).get("state")
                == "delivered", 30, "the study to be marked delivered")
    task = daemon.task(task_id)
    assert task.state == "done", task
    assert not daemon.store.tasks.list(state=TaskState.DEAD)


def test_scp_process_killed_mid_cmove_then_delivered(daemon_factory, pacs, cloud):
    study_uid, sops = study_at(pacs, "ACC-KILL", 80)
    d = daemon_factory()
    [child] = d.scp_pids()
    task_id = d.retrieve(study_uid)
    d.wait(lambda: d.instances_received(study_uid) >= 10, 30, "the C-MOVE to be under way",
           every=0.02)
    os.kill(child, signal.SIGKILL)
    assert d.instances_received(study_uid) < len(sops)  # it really was cut off mid-way

    _delivered(d, cloud, study_uid, sops, task_id)
    waits = [e for e in d.named("task.waiting") if e["task_id"] == task_id]
    assert waits and waits[0]["waiting_for"] == "storage SCP", waits
    # the supervisor's record ("killed by SIGKILL"), or, when the PACS ends its C-MOVE
    # before the supervisor noticed, the process of the C-MOVE's association being gone
    assert ("our Portal AET's process died: killed by SIGKILL" in waits[0]["error"]
            or f"our Portal AET's process died: process {child}," in waits[0]["error"]), waits
    assert "add AE" not in waits[0]["error"]  # not blamed on the PACS's AE registration
    assert d.named("scp.process_restarted")


def test_disk_floor_hit_mid_cmove_then_cleared(tmpfs, daemon_factory, pacs, cloud):
    fs = tmpfs("48M")
    # 40 instances of 128 KB (5 MB); the floor is crossed after about 2 MB of them
    study_uid, sops = study_at(pacs, "ACC-FLOOR", 40, rows=256)
    filler = fs / "filler"
    d = daemon_factory(state_dir=fs / "state", min_free_disk="20MB")
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    filler.write_bytes(b"\0" * (free - 22 * 1024 * 1024))
    task_id = d.retrieve(study_uid)
    d.wait(lambda: [e for e in d.named("task.waiting") if e["task_id"] == task_id], 60,
           "the retrieve to wait for disk space")
    assert d.named("store.refused")
    wait = [e for e in d.named("task.waiting") if e["task_id"] == task_id][0]
    assert wait["waiting_for"] == "disk space", wait
    assert "min_free_disk" in wait["error"]
    assert d.task(task_id).state == "pending"
    assert not d.store.tasks.list(state=TaskState.DEAD)

    filler.unlink()  # the administrator frees space; nobody touches dicomgate
    _delivered(d, cloud, study_uid, sops, task_id)


def test_pacs_down_past_max_attempts_then_back(daemon_factory, pacs, cloud):
    study_uid, sops = study_at(pacs, "ACC-DOWN", 10)
    pacs.stop()
    d = daemon_factory(max_attempts=2)
    task_id = d.retrieve(study_uid)
    d.wait(lambda: len([e for e in d.named("task.waiting") if e["task_id"] == task_id]) >= 4,
           60, "four failed tries while the PACS is down")
    task = d.task(task_id)
    assert task.state == "pending", task  # more tries than max_attempts, and not dead
    assert "did not answer" in task.last_error
    pacs.start()
    _delivered(d, cloud, study_uid, sops, task_id)
    up = d.named("pacs.up")[-1]
    assert up["retrieves_woken"] >= 0


def test_stalled_cmove_is_abandoned_and_retried(daemon_factory, pacs, cloud):
    study_uid, sops = study_at(pacs, "ACC-STALL", 80)
    d = daemon_factory(pacs_timeout="3s", move_timeout="1h")
    task_id = d.retrieve(study_uid)
    d.wait(lambda: d.instances_received(study_uid) >= 5, 30, "the C-MOVE to be under way",
           every=0.02)
    sigstop(pacs)  # the PACS hangs mid C-MOVE: TCP open, nothing more comes
    try:
        stalled = d.wait(lambda: d.named("pacs.move_stalled"), 20,
                         "the C-MOVE to be abandoned (pacs.timeout 3s, not move_timeout 1h)")
        assert "C-MOVE stalled" in stalled[0]["error"]
        code, body = d.health()
        assert code == 503 and "C-MOVE stalled" in body["checks"]["pacs"]
        assert d.task(task_id).state == "pending"
        down = d.wait(lambda: d.named("pacs.down"), 15, "the echo to fail too")
        assert "dicomgate gave up" in down[0]["error"]  # we aborted after pacs.timeout
        assert "closed it without answering" not in down[0]["error"]
        status = run_cli("status", config=d.config)
        assert "C-MOVE stalled" in status.stdout, status.stdout  # not "all is ok"
        def waiting_lane():  # between two tries (a try lasts up to pacs.timeout)
            lanes = json.loads(run_cli("status", "--json", config=d.config).stdout)["workers"]
            lane = lanes["lanes"]["retrieve"]
            return lane if lane["waiting"].get("PACS") == 1 else None

        lane = d.wait(waiting_lane, 30, "status to show the retrieve waiting for the PACS")
        assert "C-MOVE stalled" in (lane["note"] or ""), lane
    finally:
        sigcont(pacs)
    _delivered(d, cloud, study_uid, sops, task_id)
    d.wait(lambda: "C-MOVE stalled" not in d.health()[1]["checks"]["pacs"], 20,
           "the stall to clear from /healthz")


def test_hung_cmoves_do_not_stop_uploads(daemon_factory, pacs, cloud, tmp_path: Path):
    """Three retrieves hang on a PACS that accepts TCP and answers nothing; the instances a
    modality sends meanwhile reach the cloud anyway (per-kind worker lanes)."""
    d = daemon_factory(pacs_timeout="60s", workers=1, max_associations=1)
    sigstop(pacs)
    try:
        hung = [d.retrieve(f"1.2.826.0.1.3680043.8.498.{n}") for n in (1, 2, 3)]
        d.wait(lambda: d.task(hung[0]).state == "running", 10, "a retrieve to hang")
        spec = StudySpec(accession="ACC-MOD")
        data = ct_instances(spec, series=1, per_series=20)
        paths = []
        for i, blob in enumerate(data):
            p = tmp_path / f"mod{i}.dcm"
            p.write_bytes(blob)
            paths.append(p)
        d.storescu(paths)
        want = {sop_uid_of(b) for b in data}
        d.wait(lambda: cloud.sop_uids(spec.study_uid) == want, 30,
               "the modality's instances in the cloud while C-MOVEs hang")
        assert d.task(hung[0]).state == "running"  # still hung: it did not get out of the way
        _, body = d.health()
        assert body["workers"]["alive"] == body["workers"]["started"]
    finally:
        sigcont(pacs)


def test_pacs_killed_mid_cmove_is_said_so_then_delivered(daemon_factory, pacs, cloud):
    study_uid, sops = study_at(pacs, "ACC-PKILL", 80)
    d = daemon_factory(move_timeout="1h")
    task_id = d.retrieve(study_uid)
    d.wait(lambda: d.instances_received(study_uid) >= 5, 30, "the C-MOVE to be under way",
           every=0.02)
    pacs.proc.kill()  # the PACS crashes mid C-MOVE
    pacs.proc.wait(10)
    waits = d.wait(lambda: [e for e in d.named("task.waiting") if e["task_id"] == task_id],
                   30, "the retrieve to wait for the PACS")
    assert waits[0]["waiting_for"] == "PACS"
    assert "dropped the association during the C-MOVE" in waits[0]["error"], waits[0]
    assert "3600" not in waits[0]["error"]  # not "no response within move_timeout"
    pacs.start()
    _delivered(d, cloud, study_uid, sops, task_id)
