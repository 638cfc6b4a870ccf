"""Image deletion (spec 4.5): spool purge, `deletion` + `retrieve` tasks, idempotency, HMAC."""

from __future__ import annotations

import json
import time

import pytest
from shim_fixtures import HOSPITAL

from dicomgate.state.names import TaskState

DELETE = "/getway/reportAndFilm/api/deleteImage"


def seed(shim, accession: str, studies: int = 1, per_study: int = 2,
         hospital: str = HOSPITAL) -> dict:
    """An exam with studies and instances in the spool, as the images feature leaves them."""
    store = shim.store()
    spool = shim.state_dir / "spool"
    now = time.time()
    out: dict = {"study_uids": [], "paths": [], "sops": []}
    with store.db.tx() as c:
        exam_id = c.execute("INSERT INTO exams (hospital_id, accession_no, state, created_at, "
                            "updated_at) VALUES (?, ?, 'reported', ?, ?)",
                            (hospital, accession, now, now)).lastrowid
        for s in range(studies):
            study = f"1.2.826.0.1.9.{exam_id}.{s}.{accession.encode().hex()}"
            out["study_uids"].append(study)
            # the first study is linked to the exam, the next ones only by accession number
            c.execute("INSERT INTO studies (study_uid, exam_id, accession_no, state, "
                      "created_at, updated_at) VALUES (?, ?, ?, 'delivered', ?, ?)",
                      (study, exam_id if s == 0 else None, accession, now, now))
            for i in range(per_study):
                sop, series = f"{study}.1.{i}", f"{study}.1"
                path = spool / study / series / f"{sop}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.write_bytes(b"DICM" * 10)
                c.execute("INSERT INTO instances (sop_uid, study_uid, series_uid, path, state, "
                          "received_at, updated_at) VALUES (?, ?, ?, ?, 'delivered', ?, ?)",
                          (sop, study, series, str(path), now, now))
                out["paths"].append(path)
                out["sops"].append(sop)
        out["exam_id"] = exam_id
    store.close()
    return out


def body(accession: str, **over) -> dict:
    return {"patientName": "李四", "accessionNo": accession, "hospitalId": HOSPITAL,
            "operateDoctorName": "王医生", "operateDateTime": "2024-05-06 10:11:12"} | over


def tasks(shim, kind: str) -> list:
    store = shim.store()
    out = store.tasks.list(kind=kind, limit=1000)
    store.close()
    return out


def test_deletion_purges_spool_and_enqueues(shim):
    held = seed(shim, "DEL-1", studies=2)
    other = seed(shim, "KEEP-1")
    status, r = shim.post_signed(DELETE, body("DEL-1"))
    assert (status, r["code"]) == (200, 200), r
    assert r["data"]["studies"] == 2 and r["data"]["instances"] == 4
    assert r["data"]["filesRemoved"] == 4 and r["data"]["repeat"] is False
    assert not any(p.exists() for p in held["paths"])
    assert not (shim.state_dir / "spool" / held["study_uids"][0]).exists()
    assert all(p.exists() for p in other["paths"])
    store = shim.store()
    states = {r["sop_uid"]: r["state"] for r in store.db.query("SELECT * FROM instances")}
    assert all(states[s] == "deleted" for s in held["sops"])
    assert all(states[s] == "delivered" for s in other["sops"])
    d = store.deletions.get(r["data"]["deletionId"])
    assert (d.patient_name, d.operator_name) == ("李四", "王医生")  # for the upstream handler
    store.close()
    [task] = [t for t in tasks(shim, "deletion") if "DEL-1" in t.key]
    assert task.key == f"del:{HOSPITAL}:DEL-1:2024-05-06 10:11:12"
    assert task.payload == {"hospital_id": HOSPITAL, "accession_no": "DEL-1",
                            "study_uids": sorted(held["study_uids"]),
                            "sop_uids": sorted(held["sops"]),
                            "operate_time": "2024-05-06 10:11:12",
                            "deletion_id": r["data"]["deletionId"]}
    assert "李四" not in json.dumps(task.payload, ensure_ascii=False)
    rechecks = {t.key: t for t in tasks(shim, "retrieve")}
    for uid in held["study_uids"]:
        t = rechecks[f"study:{uid}"]
        assert t.payload["reason"] == "deletion" and t.payload["study_uid"] == uid
        assert t.payload["accession_no"] == "DEL-1" and t.state == "pending"
        assert t.run_after > time.time() + 60  # re-check waits for the doctor to finish


def test_repeat_is_harmless(shim):
    seed(shim, "DEL-2")
    first = shim.post_signed(DELETE, body("DEL-2"))[1]
    before = (len(tasks(shim, "deletion")), len(tasks(shim, "retrieve")))
    again = shim.post_signed(DELETE, body("DEL-2"))[1]
    assert again["code"] == 200 and again["data"]["repeat"] is True
    assert again["data"]["deletionId"] == first["data"]["deletionId"]
    assert again["data"]["filesRemoved"] == 0
    assert (len(tasks(shim, "deletion")), len(tasks(shim, "retrieve"))) == before
    store = shim.store()
    assert store.deletions.get(first["data"]["deletionId"]).requests == 2
    assert len(store.audit.list("image.delete", limit=1000)) == len(
        [d for d in store.deletions.list(limit=1000)])
    store.close()


def test_same_time_other_spelling_is_the_same_deletion(shim):
    seed(shim, "DEL-3")
    a = shim.post_signed(DELETE, body("DEL-3", operateDateTime="2024-05-06T10:11:12"))[1]
    b = shim.post_signed(DELETE, body("DEL-3"), form=True)[1]
    assert b["code"] == 200 and b["data"]["deletionId"] == a["data"]["deletionId"]


def test_accession_never_held_is_recorded_as_nothing_held(shim):
    """Success (the spec's 200), recorded and audited, and no task that could only go dead."""
    for i in range(3):
        r = shim.post_signed(DELETE, body(f"NEVER-SEEN-{i}"))[1]
        assert r["code"] == 200 and r["data"]["instances"] == 0, r
        assert r["data"]["nothingHeld"] is True
    again = shim.post_signed(DELETE, body("NEVER-SEEN-0"))[1]
    assert again["data"]["repeat"] and again["data"]["nothingHeld"]
    assert not any("NEVER-SEEN" in t.key for t in tasks(shim, "deletion"))
    assert not any("NEVER-SEEN" in t.key for t in tasks(shim, "retrieve"))
    store = shim.store()
    try:
        recorded = {d.accession_no for d in store.deletions.list(limit=1000)}
        audit = [a for a in store.audit.list("image.delete", limit=1000)
                 if "NEVER-SEEN" in (a["subject"] or "")]
        dead = store.tasks.list(state=TaskState.DEAD, limit=1000)
    finally:
        store.close()
    assert {"NEVER-SEEN-0", "NEVER-SEEN-1", "NEVER-SEEN-2"} <= recorded
    assert {a["outcome"] for a in audit} == {"nothing_held"} and len(audit) == 3
    assert not dead


def test_exam_without_studies_rechecks_by_accession(shim):
    store = shim.store()
    with store.db.tx() as c:
        c.execute("INSERT INTO exams (hospital_id, accession_no, created_at, updated_at) "
                  "VALUES (?, 'DEL-4', 0, 0)", (HOSPITAL,))
    store.close()
    assert shim.post_signed(DELETE, body("DEL-4"))[1]["code"] == 200
    assert f"acc:{HOSPITAL}:DEL-4" in {t.key for t in tasks(shim, "retrieve")}


@pytest.mark.parametrize("field", ["patientName", "accessionNo", "operateDoctorName",
                                   "operateDateTime"])
def test_missing_field_named(shim, field):
    payload = body("DEL-X")
    del payload[field]
    status, r = shim.post_signed(DELETE, payload)
    assert r["code"] == 202 and field in r["message"]


def test_bad_time_named(shim):
    r = shim.post_signed(DELETE, body("DEL-X", operateDateTime="yesterday"))[1]
    assert r["code"] == 202 and "operateDateTime" in r["message"]


def test_signature_required_and_checked(shim):
    seed(shim, "DEL-5")
    raw = json.dumps(body("DEL-5")).encode()
    status, r = shim.raw("POST", DELETE, raw, {"Content-Type": "application/json"})
    assert status == 403 and "signature required" in r["message"]
    status, r = shim.post_signed(DELETE, body("DEL-5"), secret="wrong")
    assert status == 403 and "does not match" in r["message"]
    old = str(int(time.time()) - 3600)
    status, r = shim.raw("POST", DELETE, raw, {"Content-Type": "application/json",
                                               "X-Dicomgate-Timestamp": old,
                                               "X-Dicomgate-Signature": "00"})
    assert status == 403 and "not within" in r["message"]
    assert not any("DEL-5" in t.key for t in tasks(shim, "deletion"))


def test_get_not_allowed(shim):
    r = shim.get(DELETE, accessionNo="x")
    assert r["http"] == 405

