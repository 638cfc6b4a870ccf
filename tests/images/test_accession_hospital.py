"""A hospital group sharing one PACS: the same AccessionNumber in two hospitals. The
retrieve takes the study whose Issuer of Accession Number (or Institution Name) names the
exam's hospital, and refuses loudly when the PACS does not say (a real Orthanc PACS)."""

from __future__ import annotations

import io

import pydicom
import pytest
from images_helpers import retrieve_task
from pydicom.dataset import Dataset

from dicomgate.images import Retriever
from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.tasks import Fatal

GROUP = ("H33010200001", "H33010200002")


def _study(pacs, accession: str, issuer: str | None, seed: int) -> str:
    spec = StudySpec(accession=accession)
    for blob in ct_instances(spec, series=1, per_series=2, seed=seed):
        ds = pydicom.dcmread(io.BytesIO(blob))
        if issuer is not None:
            item = Dataset()
            item.LocalNamespaceEntityID = issuer
            ds.IssuerOfAccessionNumberSequence = [item]
        out = io.BytesIO()
        ds.save_as(out)
        pacs.upload(out.getvalue())
    return spec.study_uid


def _held(gateway, study_uid: str) -> int:
    return len(gateway.store.instances.of_study(study_uid))


def test_the_exams_hospital_decides_between_equal_accession_numbers(pacs, gateway):
    first = _study(pacs, "ACC-GROUP", GROUP[0], seed=1)
    second = _study(pacs, "ACC-GROUP", GROUP[1], seed=2)
    retriever = Retriever(gateway.store, gateway.pacs, queue_uploads=False, hospitals=GROUP)
    retriever.handle(*retrieve_task({"accession_no": "ACC-GROUP", "hospital_id": GROUP[1]}))
    assert _held(gateway, second) == 2
    assert _held(gateway, first) == 0  # the other member's study is never pulled
    assert gateway.store.instances.study(first) is None


def test_equal_accession_numbers_the_pacs_does_not_tell_apart_are_refused(pacs, gateway):
    one = _study(pacs, "ACC-AMBIG", None, seed=3)
    two = _study(pacs, "ACC-AMBIG", None, seed=4)
    retriever = Retriever(gateway.store, gateway.pacs, queue_uploads=False, hospitals=GROUP)
    with pytest.raises(Fatal) as err:
        retriever.handle(*retrieve_task({"accession_no": "ACC-AMBIG", "hospital_id": GROUP[0]}))
    msg = str(err.value)
    assert "2 studies with AccessionNumber ACC-AMBIG" in msg and "none says which" in msg
    assert "gateway.group_hospital_ids" in msg and "studyInstanceUid" in msg
    assert _held(gateway, one) == 0 and _held(gateway, two) == 0

    alone = Retriever(gateway.store, gateway.pacs, queue_uploads=False,
                      hospitals=GROUP[:1])  # one hospital: both studies are its exam's
    alone.handle(*retrieve_task({"accession_no": "ACC-AMBIG", "hospital_id": GROUP[0]}))
    assert _held(gateway, one) == 2 and _held(gateway, two) == 2
