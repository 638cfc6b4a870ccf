"""Consumers get the payload as its kind, decoded once by the store: a row that does not
decode is a dead task naming the field, never a default; a key is the payload's own."""

from __future__ import annotations

import pytest

from dicomgate.config import TasksConfig
from dicomgate.state import Store
from dicomgate.state.kinds import Deletion, Retrieve, Upload
from dicomgate.tasks import Registry, WorkerPool
from tests.support.engines import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "state")
    yield s
    s.close()


def pool(store: Store, seen: list) -> WorkerPool:
    reg = Registry()
    for kind in ("upload", "retrieve", "deletion"):
        reg.register(kind, lambda work, task: seen.append((work, task.key)) or "ok")
    return WorkerPool(store, reg, TasksConfig(), owner="test")


def corrupt(store: Store, task_id: int, payload: str) -> None:
    """What a hand edit, a bug in an older version or a disk fault leaves in a row."""
    with store.db.tx() as c:  # the raw row, past the store's encoding, on either engine
        c.execute("UPDATE tasks SET payload=? WHERE id=?", (payload, task_id))


def test_handlers_get_the_typed_kind(store):
    seen: list = []
    store.tasks.enqueue(Retrieve(study_uid="1.2.3", reason="exam performed"))
    store.tasks.enqueue(Deletion("H1", "A1", ("1.2",), (), "2024-01-01 08:00:00", 7))
    pool(store, seen).drain()
    works = {type(w): w for w, _ in seen}
    assert works[Retrieve] == Retrieve(study_uid="1.2.3", reason="exam performed")
    assert works[Deletion].study_uids == ("1.2",)  # a tuple again, as it was built


@pytest.mark.parametrize("payload, field", [
    ("{}", "'study_uid' is missing"),
    ('{"study_uid": 12}', "'study_uid' is 12"),
    ('{"study_uid": "1.2", "studyUid": "1.2"}', "'studyUid' is not one of upload's fields"),
    ("not json", "payload does not decode"),
])
def test_a_row_that_does_not_decode_is_dead_naming_the_field(store, payload, field):
    seen: list = []
    tid = store.tasks.enqueue(Upload("1.2.9")).id
    corrupt(store, tid, payload)
    pool(store, seen).drain()
    task = store.tasks.get(tid)
    assert seen == []  # the handler never ran on a guess
    assert task.state == "dead" and field in task.last_error, task.last_error
    assert task.work is None and field in task.malformed


def test_a_key_is_a_function_of_the_payload(store):
    with pytest.raises(TypeError):
        store.tasks.enqueue(Retrieve(study_uid="1.2"), key="acc:H1:A1")  # type: ignore[call-arg]


def test_one_study_holds_one_retrieve_once_its_uid_is_known(store):
    """An exam queued by accession number before its study UID was known, then (a later
    poll, a deletion's re-check) by study: one active retrieve, not an acc: and a study:."""
    first = store.tasks.enqueue(Retrieve(hospital_id="H1", accession_no="A1", exam_id=1,
                                         reason="exam performed"), delay=60)
    store.tasks.enqueue(Retrieve(study_uid="1.2.5", hospital_id="H1", accession_no="A1",
                                 exam_id=1, reason="deletion"), reopen=True)
    active = [t for t in store.tasks.list(kind="retrieve") if t.state in ("pending", "running")]
    assert [t.key for t in active] == ["study:1.2.5"]
    old = store.tasks.get(first.id)
    assert old.state == "cancelled" and "superseded by retrieve study:1.2.5" in old.last_error
