"""header.py reads the values a received instance is recorded by straight from its bytes:
where it answers, it must answer what pydicom reads; where it cannot, it says so (None)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom.data
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from dicomgate.images import header
from dicomgate.images.ingest import Malformed, _read_with_pydicom, identify

TEST_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm"))


def _values(h: header.Header) -> tuple:
    return (h.transfer_syntax, h.media_sop_class_uid, h.sop_class_uid, h.sop_uid,
            h.study_uid, h.series_uid, h.pixel_length, h.rows or 0, h.cols or 0, h.bits or 0,
            int(h.samples or 1), str(h.frames or 1).strip())


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_pydicom_test_files_read_as_pydicom_reads_them(path):
    fast = header.read(path)
    if fast is None:
        return  # big endian, deflate, no File Meta...: pydicom reads it (identify)
    assert _values(fast) == _values(_read_with_pydicom(path))


def test_most_pydicom_test_files_take_the_fast_path():
    assert sum(header.read(p) is not None for p in TEST_FILES) >= len(TEST_FILES) * 2 // 3


UIDS = st.from_regex(r"1\.2\.[1-9][0-9]{0,20}(\.[1-9][0-9]{0,8}){0,3}", fullmatch=True)


@st.composite
def items(draw, depth: int = 0) -> Dataset:
    item = Dataset()
    item.CodeValue = draw(st.text("ABC123", min_size=1, max_size=8))
    item.CodeMeaning = draw(st.text("abc ", max_size=30))
    if depth < 2 and draw(st.booleans()):
        item.ConceptNameCodeSequence = Sequence(draw(st.lists(items(depth + 1), max_size=2)))
        item["ConceptNameCodeSequence"].is_undefined_length = draw(st.booleans())
    item.is_undefined_length_sequence_item = draw(st.booleans())
    return item


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(syntax=st.sampled_from([ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                               JPEGBaseline8Bit]),
       uids=st.lists(UIDS, min_size=4, max_size=4), rows=st.integers(1, 600),
       short=st.integers(0, 40), seq=st.lists(items(), max_size=3),
       undefined=st.booleans(), pixels=st.booleans(), note=st.text("xyz ", max_size=70000))
def test_generated_instances_read_as_written(tmp_path_factory, syntax, uids, rows, short,
                                             seq, undefined, pixels, note):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = uids
    ds.ImageComments = note  # a long header goes past header.READ: pydicom reads it then
    ds.ProcedureCodeSequence = Sequence(seq)
    ds["ProcedureCodeSequence"].is_undefined_length = undefined
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = rows, 4, 16, 1
    native = b"\0" * max(0, rows * 8 - 2 * short)
    if pixels:
        ds.PixelData = encapsulate([native]) if syntax == JPEGBaseline8Bit else native
        ds["PixelData"].is_undefined_length = syntax == JPEGBaseline8Bit
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = uids[:2]
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=True)
    path = tmp_path_factory.mktemp("h") / "x.dcm"
    path.write_bytes(buf.getvalue())
    fast = header.read(path)
    if fast is None:
        assert len(buf.getvalue()) > header.READ
        return
    assert (fast.sop_class_uid, fast.sop_uid, fast.study_uid, fast.series_uid) == tuple(uids)
    assert (fast.transfer_syntax, fast.rows, fast.bits) == (syntax, rows, 16)
    length = 0xFFFFFFFF if syntax == JPEGBaseline8Bit else len(native)
    assert fast.pixel_length == (length if pixels else None)
    assert _values(fast) == _values(_read_with_pydicom(path))


def test_a_truncated_header_falls_back_to_pydicom_and_is_malformed(tmp_path):
    path = tmp_path / "cut.dcm"
    whole = (Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm").read_bytes()
    path.write_bytes(whole[:600])  # cut inside an element of the dataset
    assert header.read(path) is None
    with pytest.raises(Malformed):
        identify(path)
