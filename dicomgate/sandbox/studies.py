"""Synthetic studies for tests, benchmarks and the demo.

Two sources: pydicom's bundled test files (real encodings: JPEG, JPEG-LS, J2K, RLE,
deflated, implicit VR) re-stamped with a study's identity, and generated CT slices
of any size. No pixel data is decoded or re-encoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

# pydicom test files that are valid Part 10 with pixel data, one per transfer syntax family.
BUNDLED = (
    "CT_small.dcm",                    # explicit VR little endian
    "MR_small_implicit.dcm",           # implicit VR little endian
    "image_dfl.dcm",                   # deflated explicit VR little endian
    "SC_rgb_jpeg_dcmtk.dcm",           # JPEG baseline
    "JPEG-lossy.dcm",                  # JPEG extended
    "SC_rgb_jpeg_gdcm.dcm",            # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",   # JPEG-LS lossless
    "MR_small_jp2klossless.dcm",       # JPEG 2000 lossless
    "JPEG2000.dcm",                    # JPEG 2000
    "MR_small_RLE.dcm",                # RLE lossless
)


@dataclass
class Patient:
    patient_id: str = "P0001"
    name: str = "Zhang^San=张三"
    birth_date: str = "19800101"
    sex: str = "M"
    charset: str = "ISO_IR 192"  # UTF-8; "GB18030" also supported


@dataclass
class StudySpec:
    accession: str
    patient: Patient = field(default_factory=Patient)
    study_uid: str = field(default_factory=generate_uid)
    description: str = "CT CHEST"
    modality: str = "CT"
    study_date: str = "20261125"


def _stamp(ds: Dataset, spec: StudySpec, series_uid: str, sop_uid: str, number: int) -> None:
    p = spec.patient
    ds.SpecificCharacterSet = p.charset
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.AccessionNumber = spec.accession
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyDescription = spec.description
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.StudyID = spec.accession[-16:]
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = number
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bundled_instances(spec: StudySpec, names: tuple[str, ...] = BUNDLED) -> list[bytes]:
    """One instance per bundled file, each in its own series, in its original encoding."""
    out = []
    for i, name in enumerate(names, 1):
        ds = pydicom.dcmread(get_testdata_file(name))
        _stamp(ds, spec, generate_uid(), generate_uid(), i)
        out.append(_bytes(ds))
    return out


def ct_instances(spec: StudySpec, series: int = 2, per_series: int = 5, rows: int = 64,
                 cols: int = 64, seed: int = 0) -> list[bytes]:
    """Generated 16-bit CT slices, uncompressed (rows*cols*2 bytes of pixel data each)."""
    out = []
    pixels_per = rows * cols * 2
    for s in range(series):
        series_uid = generate_uid()
        for n in range(1, per_series + 1):
            ds = _ct_dataset(rows, cols)
            _stamp(ds, spec, series_uid, generate_uid(), n)
            ds.SeriesNumber = s + 1
            ds.SliceLocation = float(n)
            # Deterministic, incompressible-looking pixels without holding many in memory.
            ds.PixelData = _noise(pixels_per, seed + s * 100_000 + n)
            out.append(_bytes(ds))
    return out


def _ct_dataset(rows: int, cols: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ds


def _noise(n: int, seed: int) -> bytes:
    import random

    rng = random.Random(seed)
    return rng.randbytes(n)


def sop_uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
