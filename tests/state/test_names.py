"""Facts and states are declared once (state/names.py): a name nobody declared is refused
loudly, and the console reads payloads as their kinds, not by JSON path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicomgate.state.kinds import PushReport
from dicomgate.state.migrations import m001_foundation
from dicomgate.state.names import ExamState, Fact, StudyState, TaskState

MIGRATION = Path(m001_foundation.__file__).read_text()


def test_a_fact_by_a_bare_string_is_refused(store):
    with pytest.raises(TypeError, match="not declared"):
        store.facts.set("images.pacs_echo", {"ok": True})
    with pytest.raises(TypeError, match="not declared"):
        store.facts.get("images.pacs_ech")  # the typo that used to read None forever
    store.facts.set(Fact.PACS_ECHO, {"ok": True})
    assert store.facts.get(Fact.PACS_ECHO) == {"ok": True}


def test_a_state_not_given_as_its_member_is_refused_not_stored_or_searched(store):
    store.instances.ensure_study("1.2.3")
    with pytest.raises(TypeError, match=r"'completed' is not a member of StudyState: pass "
                                        r"one of dicomgate\.state\.names\.StudyState\.\{NEW, "):
        store.instances.set_study("1.2.3", state="completed")
    with pytest.raises(TypeError, match="StudyState"):
        store.instances.set_study("1.2.3", state="complete")  # its value, not the member
    assert store.instances.study("1.2.3")["state"] == "new"
    with pytest.raises(TypeError, match="not a member of TaskState"):
        store.tasks.list(state="deed")  # used to answer "no dead tasks"
    with pytest.raises(TypeError, match="not a member of ExamState"):
        store.exams.insert(hospital_id="H1", accession_no="A1", state="refunded")
    assert store.exams.get("H1", "A1") is None
    with pytest.raises(TypeError, match="not a member of InstanceState"):
        store.instances.set_state(["1.2.3.1"], "delivered")
    with pytest.raises(TypeError, match="not a member of InstanceState"):
        store.instances.of_study("1.2.3", ("received",))
    with pytest.raises(TypeError, match="not a member of ExamState"):
        store.console.search_exams(states=["quarantined"])
    with pytest.raises(TypeError, match="not a member of SessionState"):
        store.sessions.list(state="open")
    with pytest.raises(ValueError, match="not declared"):
        store.tasks.list(kind="retreive")
    store.instances.set_study("1.2.3", state=StudyState.COMPLETE)
    assert store.instances.study("1.2.3")["state"] == StudyState.COMPLETE


def test_making_an_undeclared_kind_due_is_an_error_not_zero_tasks(store):
    with pytest.raises(ValueError, match="not declared"):
        store.tasks.make_due(("retreive",))
    assert store.tasks.make_due((PushReport.kind,)) == 0


def test_task_states_are_the_schemas(store):
    allowed = re.search(r"CHECK \(state IN \(([^)]*)\)\),\n    attempts", MIGRATION).group(1)
    assert [s.strip(" '") for s in allowed.split(",")] == [s.value for s in TaskState]
    tid = store.tasks.enqueue(PushReport(1, 1)).id
    assert store.tasks.get(tid).state is TaskState.PENDING


def test_console_reads_the_pushed_version_from_the_typed_payload(store):
    exam_id = store.exams.insert(hospital_id="H1", accession_no="A1", state=ExamState.REPORTED)
    for version in (1, 3, 2):
        store.tasks.enqueue(PushReport(exam_id, version), exam_id=exam_id)
    for _ in range(3):
        task = store.tasks.claim([PushReport.kind], "me", 60)
        if task.work.version != 2:
            store.tasks.complete(task.id, "me")
    exam = store.exams.get_by_id(exam_id)
    pipe = store.console.pipelines([exam])[exam_id]
    assert pipe["pushed_version"] == 3 and pipe["tasks"] == {"done": 2, "running": 1}
