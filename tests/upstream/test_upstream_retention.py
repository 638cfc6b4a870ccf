"""Spool retention: files go only after confirmed delivery plus upstream.retention."""

from __future__ import annotations

import time
from pathlib import Path

from upstream_helpers import build_app, complete, drain, enqueue_upload, spool, upstream_config

from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state.names import InstanceState, StudyState


def test_retention_deletes_only_delivered_files(tmp_path, fresh_cloud):
    app = build_app(upstream_config(tmp_path / "state", fresh_cloud.dicomweb_url,
                                    "http://127.0.0.1:9/api", retention="1h"))
    up = app.features["upstream"]
    sent, held = StudySpec("ACC-R1"), StudySpec("ACC-R2")
    sent_uids = spool(app, ct_instances(sent, series=1, per_series=3))
    held_uids = spool(app, ct_instances(held, series=1, per_series=2))  # never uploaded
    complete(app, sent.study_uid, 3)
    enqueue_upload(app, sent.study_uid)
    assert drain(app) == ["done"]
    app.store.instances.set_state([held_uids[1]], InstanceState.REJECTED, "test")
    paths = {u: Path(app.store.instances.get(u).path) for u in sent_uids + held_uids}

    assert up.retention.run() == "nothing to purge"  # delivered just now: kept an hour
    assert all(p.exists() for p in paths.values())

    result = up.retention.run(now=time.time() + 3601)
    assert result.startswith("purged 3 instance(s)")
    for u in sent_uids:
        assert not paths[u].exists()
        assert app.store.instances.get(u).state == "purged"
    assert not (app.config.gateway.spool_dir / sent.study_uid).exists()  # folders pruned
    for u in held_uids:
        assert paths[u].exists()
    assert app.store.instances.get(held_uids[0]).state == "received"
    assert app.store.instances.get(held_uids[1]).state == "rejected"
    assert up.retention.run(now=time.time() + 3601) == "nothing to purge"
    # A purged study stays delivered in the cloud: nothing is sent again.
    assert fresh_cloud.sop_uids(sent.study_uid) == set(sent_uids)


def test_retention_keeps_new_content_of_a_delivered_instance(tmp_path, fresh_cloud):
    app = build_app(upstream_config(tmp_path / "state", fresh_cloud.dicomweb_url,
                                    "http://127.0.0.1:9/api", retention="1s"))
    spec = StudySpec("ACC-R3")
    uid = spool(app, ct_instances(spec, series=1, per_series=1))[0]
    enqueue_upload(app, spec.study_uid)
    assert drain(app) == ["done"]
    path = Path(app.store.instances.get(uid).path)
    path.write_bytes(path.read_bytes() + b"\0\0")  # replaced on disk, row not yet updated
    app.features["upstream"].retention.run(now=time.time() + 10)
    assert path.exists()


def test_retention_removes_withdrawn_studies_after_the_retention(tmp_path, fresh_cloud):
    app = build_app(upstream_config(tmp_path / "state", fresh_cloud.dicomweb_url,
                                    "http://127.0.0.1:9/api", retention="1h"))
    spec = StudySpec("ACC-W1")
    uids = spool(app, ct_instances(spec, series=1, per_series=2))  # never uploaded
    app.store.instances.set_study(spec.study_uid, state=StudyState.WITHDRAWN)
    paths = [Path(app.store.instances.get(u).path) for u in uids]
    up = app.features["upstream"]
    assert up.retention.run() == "nothing to purge"  # a refund may still be reversed
    assert up.retention.run(now=time.time() + 3601).startswith("purged 2 instance(s)")
    assert not any(p.exists() for p in paths)
    assert {app.store.instances.get(u).state for u in uids} == {"purged"}
