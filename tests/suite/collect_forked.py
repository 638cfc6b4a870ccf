"""Collect several pytest runs (`--collect-only`) from one interpreter: the big libraries
are imported once here, then each run is a forked child that starts pytest from nothing of
the tests (no test module, no conftest, not the `tests` package are imported before the
fork), so what it collects, and how, is what `pytest <those folders>` would.

Usage: python collect_forked.py RUNS_JSON OUT_DIR PARALLEL; writes OUT_DIR/<name>.log and
OUT_DIR/<name>.rc for every run."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from pathlib import Path

# What every run would import anyway and costs most of a run's start (about 1 s of CPU each)
PRELOAD = ("pytest", "_pytest.python", "_pytest.fixtures", "pydicom", "pynetdicom",
           "requests", "hypothesis", "schemathesis", "psycopg", "dicomgate.cli",
           "dicomgate.daemon")
FLAGS = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:hypothesispytest", "-p", "no:rerunfailures"]


def _child(name: str, args: list[str], out: Path) -> int:
    fd = os.open(out / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import pytest

    try:
        return int(pytest.main([*FLAGS, f"--basetemp={out / name}", *args]))
    except BaseException:  # noqa: BLE001 - the run's outcome is what the parent reads
        traceback.print_exc()
        return 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(runs: dict[str, list[str]], out: Path, parallel: int) -> None:
    sys.path[0] = os.getcwd()  # as `python -m pytest` run from the project root has it
    # the outer run's extra options (-v changes the output read here; --report-log would be
    # overwritten by every child) are not this check's
    os.environ.pop("PYTEST_ADDOPTS", None)
    for module in PRELOAD:
        importlib.import_module(module)
    assert not [m for m in sys.modules if m == "tests" or m.startswith(("tests.", "conftest"))]
    pending, children = list(runs.items()), {}
    while pending or children:
        while pending and len(children) < parallel:
            name, args = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(_child(name, args, out))
            children[pid] = name
        pid, status = os.wait()
        (out / f"{children.pop(pid)}.rc").write_text(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
