"""The suite itself: every test folder collects alone and beside any other, so that
`pytest tests/<folder>` (or two folders, in any order) runs what it names.

Test folders are not packages: pytest puts each on sys.path and imports its modules by
file name. Hence two rules, checked statically here: no module imports `conftest` by name
(which conftest that is depends on what pytest loaded last), and no two folders have a
module of the same name (the second would silently get the first's)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FOLDERS = sorted(p.name for p in TESTS.iterdir()
                 if p.is_dir() and any(p.glob("test_*.py")))
# every folder alone, and the whole suite with the folders in reverse order: pytest loads
# all the conftests named on its command line before it imports the first test module
RUNS = {**{f: [f"tests/{f}"] for f in FOLDERS},
        "all-reversed": [f"tests/{f}" for f in reversed(FOLDERS)]}


def _failure(name: str, rc: int, output: str) -> str | None:
    lines = output.strip().splitlines() or [""]
    if rc == 0 and re.fullmatch(r"\d+ tests? collected in .*", lines[-1]):
        return None
    return (f"pytest --collect-only {' '.join(RUNS[name])} (exit {rc}):\n"
            + "\n".join(lines[-40:]))


def test_every_folder_collects_alone_and_in_reverse_order(tmp_path: Path) -> None:
    """One test, not one per folder: under pytest-xdist a shared fixture would run on
    every worker that got one of them. The runs are forked from one interpreter that has
    imported the big libraries (not the tests) once: two at a time."""
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "collect_forked.py"),
                        json.dumps(RUNS), str(tmp_path), "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    failures = [f for name in RUNS
                if (f := _failure(name, int((tmp_path / f"{name}.rc").read_text()),
                                  (tmp_path / f"{name}.log").read_text()))]
    assert not failures, "\n\n".join(failures)


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)


def test_no_module_imports_conftest_by_name() -> None:
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "conftest" or n.endswith(".conftest") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, ("import from a helper module, not from conftest (which conftest "
                           "that is depends on what else pytest loaded): "
                           + ", ".join(offenders))


def test_module_names_are_unique_across_test_folders() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        folder = path.parent
        if (folder / "__init__.py").exists() or path.name == "conftest.py":
            continue  # a package's modules have dotted names; conftests pytest keeps apart
        by_name[path.stem].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not twice, f"module names imported by name must be unique: {twice}"
