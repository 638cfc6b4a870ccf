"""The helpers every test package shares: configuration files, the `dicomgate` command in a
subprocess, the daemon, bounded waits. One definition each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

DICOMGATE = [sys.executable, "-m", "dicomgate.cli"]
HOSPITAL_ID = "H33010200001"
T = TypeVar("T")


# -- configuration ----------------------------------------------------------------------------
def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v) + '"'


def toml_table(name: str, **values: Any) -> str:
    """`[name]` and one `key = value` line per keyword (None leaves the key out)."""
    lines = [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()
                             if v is not None]
    return "\n".join(lines) + "\n"


def gateway_toml(state_dir: Path, port: int, hospital_id: str = HOSPITAL_ID,
                 gateway: dict[str, Any] | None = None, **dicom: Any) -> str:
    """The two sections every configuration has: [gateway] and [dicom] (Portal AET on `port`);
    more [dicom] keys as keywords. On PostgreSQL (tests/support/engines.py), [state] too."""
    from tests.support.engines import state_toml

    dicom = {"ae_title": "DICOMGATE", **dicom}
    return (toml_table("gateway", hospital_id=hospital_id, state_dir=str(state_dir),
                       **(gateway or {}))
            + toml_table("dicom", port=port, **dicom) + state_toml(state_dir))


# -- the command and the daemon -----------------------------------------------------------------
def run_cli(*args: str, config: Path | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*DICOMGATE, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start_daemon(config: Path, log: Path | None = None, env: dict[str, str] | None = None,
                 **popen: Any) -> subprocess.Popen:
    """`dicomgate --config CONFIG run` in a subprocess; its output appended to `log` when
    given (else as `popen` says: stdout=PIPE, ...)."""
    cmd = [*DICOMGATE, "--config", str(config), "run"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if log is None:
        return subprocess.Popen(cmd, env=environment, **popen)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                **popen)


def stop_daemon(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not end within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- waiting ----------------------------------------------------------------------------------
def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               what: str = "", detail: Callable[[], str] | None = None) -> T:
    """Poll `condition` until it returns something true, and return that; AssertionError
    naming `what` (and `detail()`, e.g. a log's tail) after `timeout` seconds. Instead of
    sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for "
                                 f"{what or getattr(condition, '__name__', 'the condition')}"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)
