"""`kill -9` of a real `dicomgate run` in the middle of an upload, then a restart."""

from __future__ import annotations

import os
import signal

from upstream_helpers import build_app, complete, enqueue_upload, spool, upstream_config

from dicomgate.sandbox.studies import StudySpec, ct_instances
from tests.support import start_daemon, wait_until

N = 240


def test_kill_9_during_upload_then_every_instance_exactly_once(tmp_path, fresh_cloud):
    config = upstream_config(tmp_path / "state", fresh_cloud.dicomweb_url,
                             "http://127.0.0.1:9/api", concurrency=1, batch_max_instances=1)
    app = build_app(config)
    spec = StudySpec("ACC-KILL")
    uids = spool(app, ct_instances(spec, series=2, per_series=N // 2, rows=128, cols=128))
    complete(app, spec.study_uid, N)
    enqueue_upload(app, spec.study_uid)
    store = app.store

    def progressed() -> int:
        c = store.instances.study_counts(spec.study_uid)
        return c.get("uploaded", 0) + c.get("delivered", 0)

    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log, start_new_session=True)
    try:
        wait_until(lambda: progressed() >= 20, 30, what="20 instances uploaded",
                   detail=lambda: log.read_text()[-2000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    at_kill = progressed()
    assert at_kill < N, "the upload finished before the kill: the test proved nothing"
    task = store.tasks.find("upload", f"study:{spec.study_uid}")
    assert task.state == "running"  # the dead process still holds the lease

    proc = start_daemon(config, log, start_new_session=True)
    try:
        wait_until(lambda: (store.instances.study(spec.study_uid) or {}).get("state")
                   == "delivered", 90, 0.2, what="the study delivered after the restart",
                   detail=lambda: log.read_text()[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert fresh_cloud.sop_uids(spec.study_uid) == set(uids)
    assert fresh_cloud.get("/statistics")["CountInstances"] == N
    # At most the request in flight at the kill went twice (absorbed by STOW idempotency).
    attempts = store.delivery.attempts(uids)
    assert sum(a["attempts"] for a in attempts.values()) <= N + 1
    assert store.instances.study_counts(spec.study_uid) == {"delivered": N}
