"""The suite itself: every test folder collects alone and beside any other, so that
`pytest tests/<folder>` (or two folders, in any order) runs what it names.

Test folders are not packages: pytest puts each on sys.path and imports its modules by
file name. Hence two rules, checked statically here: no module imports `conftest` by name
(which conftest that is depends on what pytest loaded last), and no two folders have a
module of the same name (the second would silently get the first's)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FOLDERS = sorted(p.name for p in TESTS.iterdir()
                 if p.is_dir() and any(p.glob("test_*.py")))
# every folder alone, and the whole suite with the folders in reverse order: pytest loads
# all the conftests named on its command line before it imports the first test module
RUNS = {**{f: [f"tests/{f}"] for f in FOLDERS},
        "all-reversed": [f"tests/{f}" for f in reversed(FOLDERS)]}


def _collect(args: list[str], basetemp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-p", "no:hypothesispytest", f"--basetemp={basetemp}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def _failure(name: str, out: subprocess.CompletedProcess) -> str | None:
    lines = (out.stdout + out.stderr).strip().splitlines() or [""]
    if out.returncode == 0 and re.fullmatch(r"\d+ tests? collected in .*", lines[-1]):
        return None
    return (f"pytest --collect-only {' '.join(RUNS[name])} (exit {out.returncode}):\n"
            + "\n".join(lines[-40:]))


def test_every_folder_collects_alone_and_in_reverse_order(tmp_path: Path) -> None:
    """One test, not one per folder: under pytest-xdist a shared fixture would run on
    every worker that got one of them. Two subprocesses at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {name: pool.submit(_collect, args, tmp_path / name)
                for name, args in RUNS.items()}
        failures = [f for name, run in runs.items() if (f := _failure(name, run.result()))]
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
