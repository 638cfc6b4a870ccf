"""A renamed or misspelt state is a type error, not a silently empty answer: the state API
takes enum members (state/names.py), mypy (run by ./scripts/test) checks the callers, and a
plain string that slips past it is refused when the code runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dicomgate.state.names import TaskState

ROOT = Path(__file__).resolve().parents[2]

CALLERS = '''\
from dicomgate.state import Store
from dicomgate.state.names import Fact, StudyState, TaskState


def misspelt(store: Store) -> None:
    store.instances.set_study("1.2.3", state=StudyState.COMPLET)


def by_hand(store: Store) -> None:
    store.tasks.list(state="dead")


def fact_by_hand(store: Store) -> None:
    store.facts.get("images.pacs_echo")


def right(store: Store) -> None:
    store.instances.set_study("1.2.3", state=StudyState.COMPLETE)
    store.tasks.list(state=TaskState.DEAD)
    store.facts.get(Fact.PACS_ECHO)
'''


def mypy(tmp_path: Path, source: str) -> dict[int, str]:
    """{line: mypy's error} for `source`, checked with the project's configuration."""
    path = tmp_path / "callers.py"
    path.write_text(source)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
         "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)})
    errors = {int(m[1]): m[2] for m in re.finditer(r"callers\.py:(\d+): error: (.*)", out.stdout)}
    assert errors or out.returncode == 0, out.stdout + out.stderr
    return errors


def test_a_misspelt_state_or_a_plain_string_is_a_type_error(tmp_path):
    errors = mypy(tmp_path, CALLERS)
    assert 'has no attribute "COMPLET"' in errors.pop(6)
    assert '"str"; expected "TaskState | None"' in errors.pop(10)
    assert '"str"; expected "Fact"' in errors.pop(14)
    assert errors == {}, errors  # the right calls pass


def test_the_package_type_checks(tmp_path):
    """What ./scripts/test runs: the whole configured check passes on the code as it is."""
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_plain_string_is_refused_at_run_time_naming_the_enum(store):
    with pytest.raises(TypeError, match=r"'dead' is not a member of TaskState: pass one of "
                                        r"dicomgate\.state\.names\.TaskState\."):
        store.tasks.list(state="dead")  # equal to TaskState.DEAD, but not declared as one
    assert store.tasks.list(state=TaskState.DEAD) == []
