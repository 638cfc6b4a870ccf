"""One file damaged in the PACS's storage: the PACS (Orthanc) aborts the study's C-MOVE
part-way with 0xC000. The retrieve goes down the repair ladder to single instances,
delivers every good instance, and names the one the PACS cannot send (task error,
`study show`, the console's Problems), without blaming our AE's registration."""

from __future__ import annotations

from pathlib import Path

import pytest
from healing_harness import GW_AET, PACS_AET, sigcont

from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from tests.support import run_cli
from tests.support.orthanc import PeerOrthanc


@pytest.fixture
def pacs(tmp_path: Path, gw_port: int):
    """Orthanc reading every file from disk (no storage cache): a damaged file shows."""
    o = PeerOrthanc(tmp_path / "pacs", PACS_AET, nagle=True,
                    modalities={"gateway": (GW_AET, "127.0.0.1", gw_port)},
                    extra={"MaximumStorageCacheSize": 0}).start()
    yield o
    sigcont(o)
    o.stop()


def damage(pacs: PeerOrthanc, sop_uid: str) -> None:
    """Overwrite the instance's file in Orthanc's storage directory."""
    [item] = [i for i in pacs.post("/tools/lookup", sop_uid) if i["Type"] == "Instance"]
    info = pacs.session.get(f"{pacs.url}/instances/{item['ID']}/attachments/dicom/info",
                            timeout=10).json()
    uuid = info["Uuid"]
    path = pacs.workdir / "storage" / uuid[:2] / uuid[2:4] / uuid
    assert path.is_file(), path
    path.write_bytes(b"not a DICOM file " * 64)


def test_one_damaged_file_at_the_pacs_is_named_the_rest_delivered(daemon_factory, pacs,
                                                                 cloud):
    spec = StudySpec(accession="ACC-DAMAGED")
    data = ct_instances(spec, series=2, per_series=15)
    for blob in data:
        pacs.upload(blob)
    bad = sop_uid_of(data[22])
    good = {sop_uid_of(b) for b in data} - {bad}
    damage(pacs, bad)

    d = daemon_factory(max_attempts=3)
    task_id = d.retrieve(spec.study_uid)
    d.wait(lambda: cloud.sop_uids(spec.study_uid) == good, 120,
           "every good instance in the cloud")
    task = d.wait(lambda: (lambda t: t if t.state == "dead" else None)(d.task(task_id)), 60,
                  "the retrieve to end naming the damaged instance")
    assert bad in task.last_error and "did not send" in task.last_error, task.last_error
    assert "29 of 30" in task.last_error, task.last_error
    assert "add AE" not in task.last_error and "allowed_calling_aets" not in task.last_error
    assert task.attempts == 1, task  # decided in one run, not by exhausting retries
    steps = [e for e in d.named("study.repair_step")]
    assert "image-each" in [s["name"] for s in steps], steps
    assert d.named("move.failed_partway")

    shown = run_cli("study", "show", spec.study_uid, config=d.config)
    assert bad in shown.stdout and "did not send" in shown.stdout, shown.stdout
    problems = d.store.console.dead_tasks()
    assert [p for p in problems if p["id"] == task_id and bad in p["last_error"]]
    d.wait(lambda: (d.store.instances.study(spec.study_uid) or {}).get("state")
           == "delivered", 60, "the study (less the damaged instance) to be delivered")
