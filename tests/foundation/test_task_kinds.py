"""The task-kind contract: declared once, enforced by the store, documented as declared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dicomgate.state.kinds import (
    KINDS,
    Deletion,
    MalformedTask,
    PushReport,
    Retrieve,
    TaskKind,
    Upload,
    Withdraw,
    table,
)
from dicomgate.tasks import Registry
from tests.support.engines import open_store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "internals.md"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "state")
    yield s
    s.close()


def _doc_table() -> str:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Task kinds", 1)[1].split("\n## ", 1)[0]
    return "\n".join(ln for ln in section.splitlines() if ln.startswith("|"))


def test_docs_table_is_the_declared_one():
    assert _doc_table() == table(), "docs/internals.md task-kind table differs from " \
        "dicomgate/state/kinds.py: paste the output of kinds.table()"
    documented = re.findall(r"^\| `(\w+)` \|", _doc_table(), re.M)
    assert documented == list(KINDS)


def test_unknown_kind_cannot_be_enqueued_or_registered(store):
    class Rogue(TaskKind):
        kind = "rogue"

        def key(self) -> str:
            return "x"

    with pytest.raises(MalformedTask, match="unknown task kind 'rogue'"):
        store.tasks.enqueue(Rogue())
    with pytest.raises(TypeError):
        store.tasks.enqueue("upload", "study:1")  # the old string API is gone
    with pytest.raises(ValueError, match="not declared"):
        Registry().register("rogue", lambda w, t: None)
    assert store.tasks.counts() == {}


def test_malformed_payloads_are_refused_when_built():
    with pytest.raises(MalformedTask, match="'study_uid'"):
        Upload(None)  # type: ignore[arg-type]
    with pytest.raises(MalformedTask, match="'version'"):
        PushReport(1, "2")  # type: ignore[arg-type]
    with pytest.raises(MalformedTask, match="needs study_uid"):
        Retrieve(reason="no identity")
    with pytest.raises(MalformedTask, match="'sop_uids'"):
        Deletion("H", "A", ("1.2",), ["1.2.3"], "2026-01-01 00:00:00", 1)  # type: ignore


def test_keys_and_json_are_the_established_format(store):
    """Tasks already queued by earlier versions keep matching (kind, key) and payload."""
    cases = [
        (Retrieve(study_uid="1.2", hospital_id="H", reason="r"), "study:1.2",
         {"study_uid": "1.2", "hospital_id": "H", "reason": "r"}),
        (Retrieve(hospital_id="H", accession_no="A", exam_id=3), "acc:H:A",
         {"hospital_id": "H", "accession_no": "A", "exam_id": 3}),
        (Upload("1.2"), "study:1.2", {"study_uid": "1.2"}),
        (PushReport(4, 2), "exam:4:v2", {"exam_id": 4, "version": 2}),
        (Withdraw("H", "A", 4, None), "exam:H:A",
         {"hospital_id": "H", "accession_no": "A", "exam_id": 4, "refund_time": None}),
        (Deletion("H", "A", ("1.2",), ("1.2.3",), "2026-01-01 00:00:00", 7),
         "del:H:A:2026-01-01 00:00:00",
         {"hospital_id": "H", "accession_no": "A", "study_uids": ["1.2"],
          "sop_uids": ["1.2.3"], "operate_time": "2026-01-01 00:00:00", "deletion_id": 7}),
    ]
    for task, key, payload in cases:
        store.tasks.enqueue(task)
        row = store.db.one("SELECT key, payload FROM tasks WHERE kind=? AND key=?",
                           (task.kind, key))
        assert row is not None, (task, key)
        assert json.loads(row["payload"]) == payload
