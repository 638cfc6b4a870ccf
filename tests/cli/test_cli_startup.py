"""The commands an installer and an operator run most (`--version`, `version`,
`check-config`, `migrate`) import no feature package: they start in about 0.1 s of CPU
instead of 0.6 s (cli/parser.py imports a command's module only when it runs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pydicom", "pynetdicom", "requests", "pyodbc", "apscheduler", "dicomgate.images",
         "dicomgate.reports", "dicomgate.shim", "dicomgate.upstream", "dicomgate.console",
         "dicomgate.app")
PROBE = """
import json, sys
from dicomgate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}),
      file=sys.stderr)
"""


def _imported(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", *args],
                       capture_output=True, text=True, timeout=60)
    return json.loads(r.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--version"], ["version"], ["check-config"], ["migrate"],
                                  ["--help"]])
def test_light_commands_import_no_feature(minimal_config, args):
    got = _imported("--config", str(minimal_config), *args)
    assert got["code"] == 0
    assert got["heavy"] == []


def test_a_command_that_needs_a_feature_imports_it_when_it_runs(minimal_config):
    got = _imported("--config", str(minimal_config), "echo")  # no [pacs]: refused, exit 2
    assert got["code"] == 2
    assert "dicomgate.images" in got["heavy"]
