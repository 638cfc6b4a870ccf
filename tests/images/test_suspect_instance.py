"""A well-formed instance whose Pixel Data is shorter than Rows x Columns x bits say: kept
and delivered byte for byte as the PACS sent it, with a warning on the study, the exam and
the console's Problems (a real Orthanc PACS)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from images_helpers import retrieve_task, same_dataset

from dicomgate.images.ingest import identify
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state.names import ExamState


def _truncated(blob: bytes, keep: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.PixelData = ds.PixelData[:keep]
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_short_pixel_data_is_delivered_as_is_and_said(pacs, gateway):
    spec = StudySpec(accession="ACC-SHORT")
    good = ct_instances(spec, series=1, per_series=2, rows=512, cols=512)
    short = _truncated(ct_instances(spec, series=1, per_series=1, rows=512, cols=512,
                                    seed=5)[0], 100_000)
    short_uid = sop_uid_of(short)
    for blob in [*good, short]:
        pacs.upload(blob)
    exam_id = gateway.store.exams.insert(hospital_id="H33010200001", accession_no="ACC-SHORT",
                                         study_uid=spec.study_uid, state=ExamState.SYNCED)

    gateway.retriever.handle(*retrieve_task({"study_uid": spec.study_uid}))

    row = gateway.store.instances.get(short_uid)
    assert row is not None and row.state == "received"  # kept, not quarantined
    with open(row.path, "rb") as f:
        assert same_dataset(f.read(), pacs.instance_file(short_uid)) == []  # not altered
    [event] = [e for e in gateway.store.dicom_events.of_study(spec.study_uid)
               if e.kind == "instance_suspect"]
    assert event.sop_uid == short_uid
    assert "holds 100000 bytes" in event.reason and "need 524288" in event.reason
    exam = gateway.store.exams.get("H33010200001", "ACC-SHORT")
    assert exam is not None and exam.id == exam_id
    assert [w for w in exam.warnings if short_uid in w and "truncated" in w], exam.warnings
    # the good ones say nothing
    assert all(identify_warning(gateway, sop_uid_of(b)) is None for b in good)
    assert gateway.store.instances.study(spec.study_uid)["state"] == "complete"


def identify_warning(gateway, sop_uid: str) -> str | None:
    row = gateway.store.instances.get(sop_uid)
    return identify(Path(row.path)).warning
