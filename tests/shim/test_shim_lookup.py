"""Cross-hospital lookup (spec 4.4.3.2) against two Orthanc + DICOMweb platforms."""

from __future__ import annotations

import io
import json

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from shim_fixtures import HOSPITAL, start_shim
from shim_sm2_reference import encrypt, public_key
from test_shim_login import SM2_KEY, login_query

from tests.support import stop_daemon

PATIENT = "330102198001011234"
OTHER_PATIENT = "330102199002022345"
LOOKUP = "/iuWorkStation/swipingIdCardNo"


def part10(patient_id: str, study_uid: str, institution: str, date: str, modality: str,
           description: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.PatientName = patient_id, "Test^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.InstitutionName, ds.StudyDate, ds.Modality = institution, date, modality
    ds.StudyDescription, ds.BodyPartExamined = description, "CHEST"
    ds.AccessionNumber = "ACC" + study_uid[-6:]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def platforms(orthanc_pair):
    province, national = orthanc_pair
    uids = {k: generate_uid() for k in ("prov", "both", "nat", "own_inst", "own_local", "other")}
    province.upload(part10(PATIENT, uids["prov"], "H330001", "20240105", "CT", "Chest CT"))
    province.upload(part10(PATIENT, uids["both"], "H330002", "20231201", "MR", "Head MR"))
    province.upload(part10(PATIENT, uids["own_inst"], HOSPITAL, "20240201", "DX", "Ours"))
    province.upload(part10(OTHER_PATIENT, uids["other"], "H330001", "20240105", "CT", "x"))
    national.upload(part10(PATIENT, uids["both"], "H330002", "20231201", "MR", "Head MR"))
    national.upload(part10(PATIENT, uids["nat"], "H110001", "20220303", "US", "Abdomen US"))
    national.upload(part10(PATIENT, uids["own_local"], "H330009", "20240301", "CT", "Ours 2"))
    return province, national, uids


@pytest.fixture(scope="module")
def lookup_shim(tmp_path_factory, platforms):
    province, national, uids = platforms
    s = start_shim(tmp_path_factory.mktemp("lookup"), province.dicomweb_url, national.dicomweb_url)
    store = s.store()
    with store.db.tx() as c:  # a study this gateway holds itself
        c.execute("INSERT INTO studies (study_uid, state, created_at, updated_at) "
                  "VALUES (?, 'delivered', 0, 0)", (uids["own_local"],))
    store.close()
    status, r = s.raw("GET", "/hrball/?" + login_query(
        encrypt(public_key(int(SM2_KEY, 16)), b"11010519491231002X").hex(), hisUserId="dr1"))
    assert r["code"] == 200, r
    yield s
    stop_daemon(s.proc)


def test_no_session_is_refused(lookup_shim):
    r = lookup_shim.get(LOOKUP, hisUserId="nobody", idCardNo=PATIENT)
    assert r["code"] == 202 and "no open login session" in r["message"]


@pytest.mark.parametrize("params,named", [
    ({"idCardNo": PATIENT}, "hisUserId"), ({"hisUserId": "dr1"}, "idCardNo"),
    ({"hisUserId": "dr1", "idCardNo": "3301*"}, "idCardNo"),
])
def test_bad_parameters_named(lookup_shim, params, named):
    r = lookup_shim.get(LOOKUP, **params)
    assert r["code"] == 202 and named in r["message"]


def test_both_platforms_merged_without_own_studies(lookup_shim, platforms):
    _, _, uids = platforms
    r = lookup_shim.get(LOOKUP, hisUserId="dr1", idCardNo=PATIENT, patientName="张三")
    assert r["code"] == 200 and r["message"] == "请求成功", r
    exams = {e["studyInstanceUid"]: e for e in r["data"]["exams"]}
    assert set(exams) == {uids["prov"], uids["both"], uids["nat"]}
    assert r["data"]["count"] == 3
    assert exams[uids["both"]]["source"] == "province,national"
    assert exams[uids["nat"]]["source"] == "national"
    prov = exams[uids["prov"]]
    assert (prov["hospital"], prov["studyDate"], prov["modality"], prov["description"]) == \
        ("H330001", "2024-01-05", "CT", "Chest CT")
    dates = [e["studyDate"] for e in r["data"]["exams"]]
    assert dates == sorted(dates, reverse=True)
    assert r["data"]["sources"]["province"] == {"ok": True, "count": 3}


def test_post_json_works_too(lookup_shim):
    status, r = lookup_shim.raw("POST", LOOKUP, json.dumps(
        {"hisUserId": "dr1", "idCardNo": OTHER_PATIENT, "hospitalld": HOSPITAL}).encode(),
        {"Content-Type": "application/json"})
    assert r["code"] == 200 and r["data"]["count"] == 1


def test_lookup_is_audited_masked(lookup_shim):
    lookup_shim.get(LOOKUP, hisUserId="dr1", idCardNo=PATIENT, patientName="张三")
    store = lookup_shim.store()
    entry = store.audit.list("lookup.external", limit=1)[0]
    store.close()
    text = json.dumps(entry, ensure_ascii=False)
    assert entry["actor"] == "dr1" and entry["outcome"] == "ok"
    assert PATIENT not in text and "张三" not in text
    assert entry["subject"] == "330102********1234" and entry["detail"]["count"] == 3


def test_one_platform_stopped(lookup_shim, platforms):
    province, national, uids = platforms
    national.stop()
    r = lookup_shim.get(LOOKUP, hisUserId="dr1", idCardNo=PATIENT)
    assert r["code"] == 200, r
    assert "国家医保影像云平台" in r["message"]
    assert {e["studyInstanceUid"] for e in r["data"]["exams"]} == {uids["prov"], uids["both"]}
    assert r["data"]["sources"]["national"]["ok"] is False
    store = lookup_shim.store()
    assert store.audit.list("lookup.external", limit=1)[0]["outcome"] == "partial"
    store.close()


def test_both_platforms_stopped(lookup_shim, platforms):
    province, national, _ = platforms
    province.stop()
    national.stop()
    r = lookup_shim.get(LOOKUP, hisUserId="dr1", idCardNo=PATIENT)
    assert (r["http"], r["code"]) == (500, 500)
    assert "省医保影像云平台" in r["message"] and "国家医保影像云平台" in r["message"]
    assert "Traceback" not in r["message"]
