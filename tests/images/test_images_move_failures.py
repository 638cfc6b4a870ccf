"""Issue 14, point 3 and 8: a C-MOVE that fails because of one bad instance our SCP
quarantined is not the PACS refusing us: the good instances are fetched and delivered,
and the task says which instance the PACS must correct (a real Orthanc PACS)."""

from __future__ import annotations

import pytest
from images_helpers import retrieve_task, with_long_uid

from dicomgate.images.retrieve import present_sop_uids
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.tasks import Fatal


def test_one_quarantined_instance_does_not_block_the_others(pacs, gateway):
    spec = StudySpec(accession="ACC-BAD")
    good = ct_instances(spec, series=1, per_series=5)
    bad, bad_uid = with_long_uid(ct_instances(spec, series=1, per_series=1, seed=7)[0], "1")
    for blob in [bad, *good]:
        pacs.upload(blob)

    with pytest.raises(Fatal) as err:
        gateway.retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))
    msg = str(err.value)
    assert "5 of 6 instances retrieved;" in msg  # no [upstream] here: nothing queued
    assert bad_uid in msg and "at most 64 characters" in msg
    assert "have the PACS correct them" in msg
    assert "add AE" not in msg  # not blamed on the PACS's AE registration
    assert present_sop_uids(gateway.store, spec.study_uid) == {sop_uid_of(b) for b in good}
    study = gateway.store.instances.study(spec.study_uid)
    assert study["state"] == "complete" and study["expected_count"] == 5
    assert gateway.store.tasks.find("upload", f"study:{spec.study_uid}") is None
    assert gateway.spool.quarantined() >= 1
