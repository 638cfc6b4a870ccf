"""One unit of work owned by state/: features group writes without holding a connection,
and repositories have one code path, inside a unit or on their own."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import dicomgate
import dicomgate.state as state
from dicomgate.state import Store
from dicomgate.state.kinds import Upload
from dicomgate.state.names import InstanceState, StudyState

PACKAGE = Path(dicomgate.__file__).parent
OUTSIDE_STATE = [p for p in PACKAGE.rglob("*.py")
                 if "state" not in p.relative_to(PACKAGE).parts[:1]
                 and "sandbox" not in p.relative_to(PACKAGE).parts[:1]]  # sandbox: the PACS


def _record(store: Store, sop: str) -> None:
    store.instances.record(sop_uid=sop, study_uid="1.2.3", series_uid="1.2.3.1",
                           sop_class_uid="1.2", transfer_syntax="1.2.840.10008.1.2.1",
                           path=f"/spool/{sop}.dcm", size=1, sha256="0" * 64, source="test")


def test_writes_of_a_unit_commit_together_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction():
        _record(store, "1.2.3.1.1")
        store.instances.set_study("1.2.3", state=StudyState.COMPLETE)
        store.tasks.enqueue(Upload("1.2.3"))
        raise RuntimeError("the spool could not take the file")
    assert store.instances.get("1.2.3.1.1") is None and store.instances.study("1.2.3") is None
    assert store.tasks.list() == []
    with store.transaction() as unit:
        _record(store, "1.2.3.1.1")
        store.instances.set_state(["1.2.3.1.1"], InstanceState.DELIVERED)
        seen_inside = store.instances.get("1.2.3.1.1").state  # the unit reads its own writes
        unit.after_commit(lambda: store.facts.all())
    assert seen_inside == "delivered" and store.instances.get("1.2.3.1.1").state == "delivered"


def test_repositories_take_no_connection():
    """Each repository method has one code path: no `conn` passed in from outside."""
    repositories = [cls for name, cls in vars(state).items()
                    if inspect.isclass(cls) and name.endswith("Store") and cls is not Store]
    assert len(repositories) >= 10
    offenders = [f"{cls.__name__}.{name}" for cls in repositories
                 for name, fn in inspect.getmembers(cls, inspect.isfunction)
                 if not name.startswith("_") and "conn" in inspect.signature(fn).parameters]
    assert offenders == []


def test_features_never_see_a_database_connection():
    offenders = []
    for path in OUTSIDE_STATE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if "sqlite3" in mods:
                    offenders.append(f"{path.name}: imports sqlite3")
            if (isinstance(node, ast.Attribute) and node.attr in ("tx", "conn")
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "db"):
                offenders.append(f"{path.name}:{node.lineno}: .db.{node.attr}")
    assert offenders == []
