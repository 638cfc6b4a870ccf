"""`dicomgate push --once`, `upload-state` and the status section, through the real CLI."""

from __future__ import annotations

import json

from upstream_helpers import build_app, complete, spool, upstream_config

from dicomgate.cli import main
from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state.names import InstanceState


def test_push_once_drains_backlog_with_progress(tmp_path, fresh_cloud, api, capsys):
    config = upstream_config(tmp_path / "state", fresh_cloud.dicomweb_url, api.url,
                             batch_max_instances=4)
    app = build_app(config)
    spec = StudySpec("ACC-CLI")
    uids = spool(app, ct_instances(spec, series=1, per_series=10))
    complete(app, spec.study_uid, 10)
    # No upload task was ever queued (images not running): push finds the backlog itself.
    assert main(["--config", str(config), "status", "--json"]) == 0
    section = json.loads(capsys.readouterr().out)["sections"]["upstream"]
    assert section["backlog_instances"] == 10 and section["oldest_age_seconds"] is not None

    assert main(["--config", str(config), "push", "--once"]) == 0
    out = capsys.readouterr().out
    assert f"upload study:{spec.study_uid}" in out
    assert "10/10 instances" in out and "3 request(s)" in out
    assert "study delivered" in out and "1 task(s) done, 0 failed" in out
    assert fresh_cloud.sop_uids(spec.study_uid) == set(uids)

    assert main(["--config", str(config), "upload-state", spec.study_uid]) == 0
    out = capsys.readouterr().out
    assert f"study {spec.study_uid}: delivered, 10 instance(s)" in out
    assert out.count(" delivered ") >= 10

    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "upstream:" in out and "backlog: 0 instance(s)" in out


def test_push_once_reports_failure_when_cloud_down(tmp_path, api, capsys):
    config = upstream_config(tmp_path / "state", "http://127.0.0.1:9/dicom-web", api.url)
    app = build_app(config)
    spec = StudySpec("ACC-CLI2")
    spool(app, ct_instances(spec, series=1, per_series=2))
    assert main(["--config", str(config), "push", "--once"]) == 1
    out = capsys.readouterr().out
    assert "will retry: STOW-RS: cannot connect" in out
    assert main(["--config", str(config), "push"]) == 2  # --once is required
    assert "--once" in capsys.readouterr().err


def test_push_without_upstream_section_is_a_clear_error(tmp_path, capsys):
    state = tmp_path / "state"
    path = tmp_path / "c.toml"
    path.write_text(f'[gateway]\nhospital_id = "H1"\nstate_dir = "{state}"\n'
                    '[dicom]\nae_title = "DG"\n')
    assert main(["--config", str(path), "push", "--once"]) == 2
    assert "no [upstream] section" in capsys.readouterr().err


def test_push_retry_rejected_is_audited(tmp_path, api, capsys, monkeypatch):
    """`push --retry-rejected` changes state as the console's button does: audited alike."""
    monkeypatch.setenv("LOGNAME", "pacs-admin")
    config = upstream_config(tmp_path / "state", "http://127.0.0.1:9/dicom-web", api.url)
    app = build_app(config)
    spec = StudySpec("ACC-CLI3")
    uids = spool(app, ct_instances(spec, series=1, per_series=2))
    app.store.instances.set_state(uids, InstanceState.REJECTED, "cloud: 0xA900 dataset mismatch")
    args = ["--config", str(config), "push", "--once", "--retry-rejected",
            "--study", spec.study_uid, "--timeout", "5"]
    assert main(args) == 1  # requeued, then the cloud is down
    assert "1 study(ies) with rejected instances queued again" in capsys.readouterr().out
    main(args)  # nothing rejected any more (back to received): audited as refused
    assert "0 study(ies) with rejected instances" in capsys.readouterr().out
    rows = list(reversed(app.store.audit.list(action="cli.resend_rejected")))
    assert [(a["actor"], a["subject"], a["outcome"]) for a in rows] == [
        ("cli:pacs-admin", f"study:{spec.study_uid}", "ok"),
        ("cli:pacs-admin", f"study:{spec.study_uid}", "refused")]
