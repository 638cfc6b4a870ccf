"""The shim acts only for our hospital (gateway.hospital_id + group_hospital_ids): a request
naming another hospital is refused with 202 on every endpoint, changes nothing, and is
audited. Deletion matches studies by (hospitalId, accessionNo)."""

from __future__ import annotations

import json

from shim_fixtures import GROUP_HOSPITAL, HOSPITAL
from test_shim_deletion import DELETE, body, seed, tasks
from test_shim_login import bc_hex, login_query

from tests.support import run_cli

FOREIGN = "H44030500009"
QRURL = "/getway/reportAndFilm/api/qrurl"
QRCODE = "/getway/reportAndFilm/api/qrcode"
LOOKUP = "/iuWorkStation/swipingIdCardNo"


def refused(r: dict) -> bool:
    return (r["code"] == 202 and r["data"] is None and FOREIGN in r["message"]
            and "not served by this gateway" in r["message"] and HOSPITAL in r["message"])


def audited(shim) -> list[dict]:
    store = shim.store()
    rows = store.audit.list("shim.refused_hospital", limit=1000)
    store.close()
    return rows


def test_qr_endpoints_issue_no_token_for_another_hospital(shim):
    before = len(audited(shim))
    for path in (QRURL, QRCODE):
        for spelling in ("hospitalId", "hospitalld"):
            r = shim.get(path, accessNumber="CT1", modality="CT", **{spelling: FOREIGN})
            assert r["http"] == 200 and refused(r), r
    rows = audited(shim)[: len(audited(shim)) - before]
    assert len(audited(shim)) - before == 4
    assert all(row["subject"] == FOREIGN and row["outcome"] == "refused" for row in rows)
    assert shim.get(QRURL, accessNumber="CT1", modality="CT", hospitalId=HOSPITAL)["code"] == 200


def test_login_opens_no_session_for_another_hospital(shim):
    status, r = shim.raw("GET", "/hrball/?" + login_query(bc_hex(), hospitalId=FOREIGN,
                                                          hisUserId="scope01"))
    assert status == 200 and refused(r), r
    store = shim.store()
    assert store.sessions.active(FOREIGN, "scope01") is None
    assert store.sessions.active(HOSPITAL, "scope01") is None
    store.close()
    # logout for another hospital is refused too (it would close someone's session)
    status, r = shim.raw("GET", f"/hrball/?hisUserId=scope01&type=2&hospitalId={FOREIGN}")
    assert refused(r), r


def test_lookup_refuses_another_hospital_even_with_a_session_here(shim):
    ok = shim.raw("GET", "/hrball/?" + login_query(bc_hex(), hisUserId="scope02"))[1]
    assert ok["code"] == 200, ok
    before = len(audited(shim))
    r = shim.get(LOOKUP, hisUserId="scope02", idCardNo="330102198001011234",
                 hospitalId=FOREIGN)
    assert refused(r), r
    assert len(audited(shim)) == before + 1
    store = shim.store()
    assert not store.audit.list("lookup.external", limit=1000) or all(
        row["detail"].get("hospitalId") != FOREIGN
        for row in store.audit.list("lookup.external", limit=1000))
    store.close()


def test_deletion_for_another_hospital_deletes_nothing(shim):
    held = seed(shim, "SCOPE-1", studies=2)
    status, r = shim.post_signed(DELETE, body("SCOPE-1", hospitalId=FOREIGN))
    assert status == 200 and refused(r), r
    assert all(p.exists() for p in held["paths"])
    store = shim.store()
    states = {row["sop_uid"]: row["state"] for row in store.db.query(
        "SELECT sop_uid, state FROM instances")}
    assert all(states[s] == "delivered" for s in held["sops"])
    assert not [d for d in store.deletions.list(limit=1000) if d.accession_no == "SCOPE-1"]
    [row] = [a for a in store.audit.list("shim.refused_hospital", limit=1000)
             if a["detail"]["path"] == DELETE]
    assert row["subject"] == FOREIGN and row["actor"] == "client:127.0.0.1"
    store.close()
    assert not any("SCOPE-1" in t.key for t in tasks(shim, "deletion") + tasks(shim, "retrieve"))


def test_group_hospital_deletion_matches_its_own_exam_only(shim):
    """The same accession number at two hospitals of the group: each deletion takes only
    its own hospital's study (accession numbers are unique per hospital, not per group)."""
    ours = seed(shim, "SCOPE-2", studies=2)  # 2nd study linked by accession only: ours
    theirs = seed(shim, "SCOPE-2", hospital=GROUP_HOSPITAL)
    status, r = shim.post_signed(DELETE, body("SCOPE-2", hospitalId=GROUP_HOSPITAL))
    assert (status, r["code"]) == (200, 200), r
    assert r["data"]["studies"] == 1 and r["data"]["instances"] == 2
    assert not any(p.exists() for p in theirs["paths"])
    assert all(p.exists() for p in ours["paths"])
    [task] = [t for t in tasks(shim, "deletion") if t.key.startswith(f"del:{GROUP_HOSPITAL}")
              and "SCOPE-2" in t.key]
    assert task.payload["study_uids"] == theirs["study_uids"]


def test_study_show_after_deletion(shim):
    """The deleted study's note is read back (was: "Expecting value")."""
    held = seed(shim, "SCOPE-3")
    assert shim.post_signed(DELETE, body("SCOPE-3"))[1]["code"] == 200
    uid = held["study_uids"][0]
    out = run_cli("study", "show", uid, config=shim.config)
    assert out.returncode == 0, out.stderr
    assert "deleted" in out.stdout and "re-check queued" in out.stdout
    out = run_cli("study", "show", "--json", uid, config=shim.config)
    assert out.returncode == 0, out.stderr
    study = json.loads(out.stdout)["study"]
    assert study["state"] == "deleted" and "re-check" in study["detail"]["note"]


def test_study_detail_written_before_the_fix_still_reads(shim):
    held = seed(shim, "SCOPE-4")
    store = shim.store()
    with store.db.tx() as c:  # a row as the old deletion code left it
        c.execute("UPDATE studies SET detail='images deleted at the PACS; re-check queued' "
                  "WHERE study_uid=?", (held["study_uids"][0],))
    assert store.instances.study(held["study_uids"][0])["detail"] == {
        "note": "images deleted at the PACS; re-check queued"}
    store.close()


def test_group_hospital_ids_are_checked_in_the_config(tmp_path):
    from dicomgate.config.load import ConfigError, parse
    raw = {"gateway": {"hospital_id": HOSPITAL, "state_dir": str(tmp_path),
                       "group_hospital_ids": [GROUP_HOSPITAL, "H 1", 7]},
           "dicom": {"ae_title": "DICOMGATE"}}
    try:
        parse(raw, tmp_path / "x.toml")
    except ConfigError as exc:
        text = str(exc)
    else:
        raise AssertionError("accepted an invalid institution code")
    assert "gateway.group_hospital_ids[1]" in text and "gateway.group_hospital_ids[2]" in text
    raw["gateway"]["group_hospital_ids"] = [GROUP_HOSPITAL]
    assert parse(raw, tmp_path / "x.toml").gateway.served_hospitals == (HOSPITAL,
                                                                        GROUP_HOSPITAL)
