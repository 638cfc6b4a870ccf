"""`dicomgate pull` without a daemon wires images as the daemon does (images.wiring.build):
the disk floor, the hospital, the retriever's outcomes in the operator's words."""

from __future__ import annotations

from pathlib import Path

from images_helpers import images_config

from dicomgate.cli import main
from dicomgate.sandbox.studies import StudySpec, ct_instances


def test_pull_without_daemon_honours_the_disk_floor(tmp_path: Path, gw_port, pacs, capsys):
    cfg = images_config(tmp_path / "floor.toml", state_dir=tmp_path / "state", port=gw_port,
                        pacs_port=pacs.dicom_port, min_free_disk="900TB")
    spec = StudySpec(accession="ACC-CLI-FLOOR")
    for blob in ct_instances(spec, series=1, per_series=3):
        pacs.upload(blob)
    assert main(["--config", str(cfg), "pull", "--study-uid", spec.study_uid]) == 1
    err = capsys.readouterr().err
    assert "free space below dicom.min_free_disk" in err and "spool" in err, err
    assert "starts by itself once space is freed" in err, err
    assert "internal error" not in err and "PACS" not in err.split(":")[0], err
