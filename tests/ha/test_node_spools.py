"""Each node's spool is its own: a deletion received by one node purges the copies in the
other's spool (a task bound to that node), and a node back after its work was taken over
drops the copies other nodes re-retrieved."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ha_harness import delivered, load, sql, wait

from dicomgate.config.load import parse
from dicomgate.nodes import NodeService
from dicomgate.state import PgLocation, Store
from dicomgate.state.names import InstanceState


def _deletions(api, accession: str) -> int:
    """Deletions the cloud applied for an exam (replays under one Idempotency-Key excluded)."""
    with api.lock:
        return sum(1 for a in api.applied if a["route"] == "/deletions"
                   and a["body"]["accessionNo"] == accession)


def test_a_deletion_received_by_one_node_purges_the_other_nodes_spool(nodes, pacs, cloud,
                                                                     api, view_db):
    b = nodes["gw-b"].start()
    exam = load(pacs, view_db, 1)[0]
    wait(lambda: delivered(cloud, api, [exam]), 120, "the study delivered by gw-b", b)
    assert b.spool_files(exam.spec.study_uid) == exam.sop_uids  # kept until retention
    a = nodes["gw-a"].start()
    answer = a.delete_images(exam)  # the PACS calls the virtual IP: gw-a answers
    assert answer["code"] == 200 and answer["data"]["instances"] == len(exam.sop_uids), answer
    wait(lambda: not b.spool_files(exam.spec.study_uid), 60,
         "gw-b's copies of the deleted study removed", a, b)
    wait(lambda: _deletions(api, exam.spec.accession), 60, "the cloud to get the deletion",
         a, b)
    purge = sql(a.url, "SELECT node, state FROM tasks WHERE kind='spool_purge'")
    assert purge == [("gw-b", "done")], purge
    assert sql(a.url, "SELECT files_removed FROM deletions") == [(len(exam.sop_uids),)]
    again = a.delete_images(exam)  # the PACS repeats the call: nothing more happens
    assert again["data"]["repeat"] is True, again
    wait(lambda: sql(a.url, "SELECT 1 FROM tasks WHERE kind='spool_purge' AND state='done'"),
         30, "the repeated purge to finish", a, b)
    assert _deletions(api, exam.spec.accession) == 1


def _spool_file(node: NodeService, study: str, sop: str, age: float) -> Path:
    path = node.spool / study / "1" / f"{sop}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"DICM")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_the_sweep_removes_only_copies_the_store_keeps_elsewhere(pg, tmp_path):
    url = pg.new_database()
    cfg = parse({"gateway": {"hospital_id": "H1", "state_dir": str(tmp_path / "a"),
                             "node_name": "gw-a"},
                 "dicom": {"ae_title": "DGATE"}, "state": {"url": url}}, tmp_path / "a.toml")
    a, b = Store(cfg.store_location), Store(PgLocation(url, tmp_path / "b", node="gw-b"))
    try:
        node = NodeService(cfg, a, "gw-a:1:1")
        for store, sop in ((b, "moved"), (b, "held.there"), (a, "mine"), (a, "gone")):
            store.instances.record(sop_uid=sop, study_uid="9.9", series_uid="1",
                                   sop_class_uid="1.2", transfer_syntax="1.2.840.10008.1.2.1",
                                   path=f"/x/{sop}", size=4, sha256=sop, source="test")
        a.instances.set_state(["gone"], InstanceState.DELETED)
        old = {sop: _spool_file(node, "9.9", sop, 3600) for sop in ("moved", "mine", "gone",
                                                                      "no.row")}
        # an identical copy of what gw-b holds, just placed here: spared while it may be a
        # receive whose row is about to move here, removed once older than the grace
        fresh = _spool_file(node, "9.9", "held.there", 0)
        node.sweep()
        assert not old["moved"].exists() and not old["gone"].exists()
        assert old["mine"].exists() and old["no.row"].exists() and fresh.exists()
        os.utime(fresh, (time.time() - 600, time.time() - 600))
        node.sweep()
        assert not fresh.exists() and old["mine"].exists()
    finally:
        a.close()
        b.close()
