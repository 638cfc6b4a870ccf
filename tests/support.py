"""Helpers for tests: write a config, run the `dicomgate` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DICOMGATE = [sys.executable, "-m", "dicomgate.cli"]


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def run_cli(*args: str, config: Path | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*DICOMGATE, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
