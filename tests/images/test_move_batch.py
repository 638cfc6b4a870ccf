"""Due retrieves moved together by one C-MOVE of a Study Instance UID list, against real
peers: Orthanc (which does list moves) and DCMTK dcmqrscp (which does not: fallback)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from images_helpers import GW_AET, PACS_AET, images_config, start_gateway, with_long_uid
from pacs_peers import DcmQrScp
from study_only_pacs import StudyOnlyPacs

from dicomgate.config.load import load
from dicomgate.images.move_batch import Batcher, list_moves_wanted, plan, verdict
from dicomgate.images.retrieve import present_sop_uids
from dicomgate.sandbox.orthanc import free_port
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from dicomgate.state.kinds import Retrieve
from dicomgate.tasks import Registry, WorkerPool
from tests.support.studies import write_study

OWNER = "test:1:1"


def _workers(gw) -> WorkerPool:
    """The daemon's wiring of retrieves: a worker pool whose retrieve handler batches."""
    registry = Registry()
    registry.register("retrieve", gw.retriever.handle)
    pool = WorkerPool(gw.store, registry, gw.config.tasks, OWNER)
    gw.retriever.batcher = Batcher(gw.store, gw.config.pacs, pool)
    return pool


def _studies(n: int, per: int = 2, prefix: str = "B") -> list[tuple[StudySpec, list[bytes]]]:
    out = []
    for i in range(n):
        spec = StudySpec(accession=f"{prefix}{i:03d}")
        out.append((spec, ct_instances(spec, series=1, per_series=per, rows=32, cols=32,
                                       seed=i)))
    return out


def _enqueue(gw, studies, by_accession: int = 0) -> None:
    """A backlog: the first `by_accession` by accession number (study UID not yet known)."""
    for i, (spec, _) in enumerate(studies):
        if i < by_accession:
            work = Retrieve(accession_no=spec.accession, hospital_id="H1")
        else:
            work = Retrieve(study_uid=spec.study_uid)
        gw.store.tasks.enqueue(work)


def _states(gw) -> dict[str, str]:
    return {t.key: t.state for t in gw.store.tasks.list(kind="retrieve")}


def test_backlog_moves_in_fewer_associations_than_studies(pacs, gateway):
    studies = _studies(6)
    for _, data in studies:
        for d in data:
            pacs.upload(d)
    _enqueue(gateway, studies, by_accession=2)
    t0 = time.time()
    assert _workers(gateway).drain(["retrieve"]) == 1  # one claim ran the whole backlog
    assert set(_states(gateway).values()) == {"done"}
    for spec, data in studies:
        assert present_sop_uids(gateway.store, spec.study_uid) == {sop_uid_of(d) for d in data}
        study = gateway.store.instances.study(spec.study_uid)
        assert (study["state"], study["expected_count"]) == ("complete", len(data))
    received = [a for a in gateway.store.portal_associations.opened_since(t0) if a.stored]
    assert len(received) == 1, [a.study_uids for a in received]
    assert sum(a.stored for a in received) == 12
    assert verdict(gateway.store, gateway.config.pacs)["ok"] is True


def test_study_missing_from_the_pacs_fails_alone(pacs, gateway):
    studies = _studies(4, prefix="M")
    for _, data in studies[:1] + studies[2:]:  # the second was never archived
        for d in data:
            pacs.upload(d)
    _enqueue(gateway, studies)
    t0 = time.time()
    _workers(gateway).drain(["retrieve"])
    missing = studies[1][0].study_uid
    received = [a for a in gateway.store.portal_associations.opened_since(t0) if a.stored]
    assert len(received) == 1 and len(received[0].study_uids.split()) == 3  # one batch
    tasks = {t.key: t for t in gateway.store.tasks.list(kind="retrieve")}
    for spec, _ in studies:
        task = tasks[f"study:{spec.study_uid}"]
        if spec.study_uid == missing:
            assert task.state == "pending"
            assert missing in task.last_error and "lists no instance" in task.last_error
        else:
            assert task.state == "done", task.last_error
            assert gateway.store.instances.study(spec.study_uid)["state"] == "complete"


def test_incomplete_study_in_a_batch_is_repaired_alone(pacs, gateway):
    """One study of the batch holds an instance our Portal AET cannot store (quarantined):
    that study alone is asked for again (its own C-MOVEs) and ends with its own message;
    the others complete from the one batched C-MOVE (Orthanc sends the studies in the
    list's order and ends the move at the failed sub-operation: the victim goes last)."""
    studies = _studies(3, per=3, prefix="R")
    victim = studies[-1][0]  # Orthanc ends a C-MOVE at its first failed sub-operation
    bad, bad_uid = with_long_uid(ct_instances(victim, series=1, per_series=1, seed=9)[0], "2")
    for blob in [b for _, data in studies for b in data] + [bad]:
        pacs.upload(blob)
    _enqueue(gateway, studies)
    t0 = time.time()
    _workers(gateway).drain(["retrieve"])
    tasks = {t.key: t for t in gateway.store.tasks.list(kind="retrieve")}
    for spec, data in studies[:2]:
        assert present_sop_uids(gateway.store, spec.study_uid) == {sop_uid_of(d) for d in data}
        assert tasks[f"study:{spec.study_uid}"].state == "done"
    task = tasks[f"study:{victim.study_uid}"]
    assert task.state == "dead"  # its own outcome and message
    assert victim.study_uid in task.last_error and bad_uid in task.last_error
    assert "quarantine" in task.last_error
    stored = [a for a in gateway.store.portal_associations.opened_since(t0)
              if a.stored or a.refused]
    assert len(stored[0].study_uids.split()) >= 2  # the batch (Orthanc's order varies)
    # afterwards only the victim's own C-MOVEs (an association that only carried its
    # refused instance names no study)
    assert {a.study_uids for a in stored[1:] if a.stored} == {victim.study_uid}
    assert verdict(gateway.store, gateway.config.pacs)["ok"] is True  # not taken as "no"


@pytest.mark.parametrize("good", [2, 0], ids=["some-good", "only-bad"])
def test_failed_suboperation_in_a_batch_is_not_taken_for_no_lists(pacs, gateway, good):
    """Every study of the batch holds an instance our Portal AET refuses: Orthanc ends the
    C-MOVE at the first one, when at most one study (none when they hold nothing else) has
    arrived. That says nothing about UID lists: the verdict stays open, each study is moved
    alone and ends with its own message."""
    studies = [(spec, data[:good]) for spec, data in _studies(2, per=2, prefix="V")]
    bad = {spec.study_uid: with_long_uid(ct_instances(spec, series=1, per_series=1,
                                                       seed=9 + i)[0], str(i + 3))
           for i, (spec, _) in enumerate(studies)}
    for blob in [b for b, _ in bad.values()] + [b for _, data in studies for b in data]:
        pacs.upload(blob)
    _enqueue(gateway, studies)
    _workers(gateway).drain(["retrieve"])
    tasks = {t.key: t for t in gateway.store.tasks.list(kind="retrieve")}
    for spec, data in studies:
        assert present_sop_uids(gateway.store, spec.study_uid) == {sop_uid_of(d) for d in data}
        task = tasks[f"study:{spec.study_uid}"]  # its own outcome (Orthanc's IMAGE-level
        assert task.state != "done" and spec.study_uid in task.last_error  # C-FIND may
        # leave the over-long UID out: "lists no instance", retried)
    assert verdict(gateway.store, gateway.config.pacs) is None  # still undecided
    assert list_moves_wanted(gateway.store, gateway.config.pacs)


def test_list_moves_off_moves_one_study_per_association(tmp_path, gw_port, pacs):
    cfg = images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state", port=gw_port,
                        pacs_port=pacs.dicom_port)
    cfg.write_text(cfg.read_text().replace('move_timeout = "60s"',
                                           'move_timeout = "60s"\nlist_moves = "off"'))
    gw = start_gateway(load(cfg))
    try:
        studies = _studies(3, prefix="O")
        for _, data in studies:
            for d in data:
                pacs.upload(d)
        _enqueue(gw, studies)
        t0 = time.time()
        assert _workers(gw).drain(["retrieve"]) == 3
        assert set(_states(gw).values()) == {"done"}
        received = [a for a in gw.store.portal_associations.opened_since(t0) if a.stored]
        assert len(received) == 3
    finally:
        gw.scp.stop()
        gw.store.close()


def test_dcmqrscp_does_list_moves_without_counts(tmp_path, gw_port):
    """DCMTK dcmqrscp matches a Study Instance UID list (one sub-association for all) but
    gives no NumberOfStudyRelatedInstances: the batch moves them all, each study's
    completeness is then checked by its listing, and nothing is moved twice."""
    studies = _studies(4, prefix="Q")
    peer = DcmQrScp(tmp_path / "dq", PACS_AET, {GW_AET: ("127.0.0.1", gw_port)}).start()
    gw = None
    try:
        peer.load([p for i, (_, data) in enumerate(studies)
                   for p in write_study(data, tmp_path / f"in{i}")])
        gw = start_gateway(load(images_config(tmp_path / "gw.toml",
                                              state_dir=tmp_path / "state", port=gw_port,
                                              pacs_port=peer.port)))
        _enqueue(gw, studies)
        t0 = time.time()
        _workers(gw).drain(["retrieve"])
        assert set(_states(gw).values()) == {"done"}
        for spec, data in studies:
            assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}
            assert gw.store.instances.study(spec.study_uid)["state"] == "complete"
        received = [a for a in gw.store.portal_associations.opened_since(t0) if a.stored]
        assert len(received) == 1 and received[0].stored == 8
        assert verdict(gw.store, gw.config.pacs)["ok"] is True
    finally:
        peer.stop()
        if gw is not None:
            gw.scp.stop()
            gw.store.close()


def test_pacs_ignoring_uid_lists_falls_back_to_one_study_per_move(tmp_path, gw_port):
    """A PACS that compares the list as one literal value (nothing matches, success with no
    sub-operation): every study is then moved on its own and arrives, and that PACS gets
    one study per C-MOVE from then on."""
    peer = StudyOnlyPacs(PACS_AET, free_port(), {GW_AET: ("127.0.0.1", gw_port)},
                         find_levels=("STUDY", "SERIES", "IMAGE"))
    first, second = _studies(3, prefix="F"), _studies(3, prefix="G")
    for _, data in first + second:
        for d in data:
            peer.add(d)
    peer.start()
    gw = None
    try:
        gw = start_gateway(load(images_config(tmp_path / "gw.toml",
                                              state_dir=tmp_path / "state", port=gw_port,
                                              pacs_port=peer.port)))
        pool = _workers(gw)
        _enqueue(gw, first)
        pool.drain(["retrieve"])
        assert set(_states(gw).values()) == {"done"}
        seen = verdict(gw.store, gw.config.pacs)
        assert seen["ok"] is False and "brought 0" in seen["why"]
        assert peer.moves == ["STUDY"] * 4  # the list, then each study alone
        _enqueue(gw, second)
        peer.moves.clear()
        assert pool.drain(["retrieve"]) == 3  # no batch: one task per claim
        assert peer.moves == ["STUDY"] * 3
        for spec, data in first + second:
            assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}
            assert gw.store.instances.study(spec.study_uid)["state"] == "complete"
    finally:
        peer.stop()
        if gw is not None:
            gw.scp.stop()
            gw.store.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 5000), max_size=40), st.integers(1, 20),
       st.integers(1, 3000))
def test_plan_bounds_every_batch(counts, size, limit):
    studies = [(f"1.2.{i}", n) for i, n in enumerate(counts)]
    n_of = dict(studies)
    groups = plan(studies, size, limit)
    flat = [u for g in groups for u in g]
    assert sorted(flat) == sorted(n_of)  # each study in exactly one group
    for g in groups:
        assert 1 <= len(g) <= size
        assert len(g) == 1 or sum(n_of[u] for u in g) <= limit  # a large study goes alone
        assert g == sorted(g, key=lambda u: int(u.split(".")[-1]))  # arrival order kept
    totals = [sum(n_of[u] for u in g) for g in groups]
    assert totals == sorted(totals)  # small groups are moved first


def test_rerun_asked_before_the_batch_moved_is_dropped(tmp_path):
    """A report audited while its retrieve ran asks for a re-check (rerun); one asked before
    the batched C-MOVE started is answered by it, one asked after is not."""
    from dicomgate.state import Store

    store = Store(tmp_path / "state.db")
    try:
        for uid in ("1.2.3.1", "1.2.3.2"):
            store.tasks.enqueue(Retrieve(study_uid=uid))
        a, b = store.tasks.claim_more("retrieve", OWNER, 60, 5)
        for t in (a, b):
            store.tasks.enqueue(Retrieve(study_uid=t.work.study_uid), reopen=True)
        moved_at = time.time() + 0.01
        time.sleep(0.02)
        store.tasks.enqueue(Retrieve(study_uid=b.work.study_uid), reopen=True)  # after
        assert store.tasks.drop_rerun(a.id, OWNER, moved_at)
        assert not store.tasks.drop_rerun(b.id, OWNER, moved_at)
        assert not store.tasks.drop_rerun(a.id, "someone else", time.time())
        for t in (a, b):
            store.tasks.complete(t.id, OWNER, "ok")
        assert (store.tasks.get(a.id).state, store.tasks.get(b.id).state) == ("done",
                                                                              "pending")
    finally:
        store.close()


@pytest.fixture(scope="module")
def pg_url():
    from tests.support import engines

    return engines.pg_server().new_database  # the server the suite's other tests use


def test_batch_claims_from_two_nodes_never_take_one_task_twice(pg_url, tmp_path):
    """Nodes sharing a PostgreSQL store claim batches at once (SKIP LOCKED): each due
    retrieve goes to exactly one node."""
    from tests.support.stores import drain_from_both, two_nodes

    with two_nodes(pg_url(), tmp_path) as (a, b):
        for i in range(120):
            a.tasks.enqueue(Retrieve(study_uid=f"1.2.9.{i}"))
        got = drain_from_both(a, b, "retrieve", 7)
        assert len(got["a"]) + len(got["b"]) == 120
        assert not set(got["a"]) & set(got["b"])
        assert {t.state for t in a.tasks.list(kind="retrieve")} == {"running"}


@pytest.mark.parametrize("line, key, expected", [
    ("list_moves = \"maybe\"", "pacs.list_moves", 'one of "auto", "on", "off"'),
    ("move_batch = 0", "pacs.move_batch", "an integer 1-64"),
    ("move_batch_instances = \"many\"", "pacs.move_batch_instances", "an integer 1-1000000")])
def test_batch_settings_name_their_key(tmp_path, line, key, expected):
    from tests.support import run_cli, write_config

    cfg = write_config(tmp_path / "bad.toml", "[gateway]\nhospital_id = \"H1\"\n"
                       "state_dir = \"/tmp/dicomgate-test-unused\"\n[dicom]\n"
                       "ae_title = \"DICOMGATE\"\n[pacs]\nae_title = \"P\"\n"
                       f"host = \"h\"\n{line}\n")
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert any(ln.startswith(f"{key}: ") and expected in ln
               for ln in r.stderr.splitlines()), r.stderr
    assert "Traceback" not in r.stderr
