"""Each node's spool is its own: a deletion received by one node purges the copies in the
other's spool (a task bound to that node), and a node back after its work was taken over
drops the copies other nodes re-retrieved."""

from __future__ import annotations

from ha_harness import delivered, load, sql, wait


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
