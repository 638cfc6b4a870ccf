"""What this installation is: version, Python, platform, schema version (for `dicomgate
version`, `status`, the console and the `dicomgate_build_info` metric)."""

from __future__ import annotations

import platform
import sys
from functools import cache

from . import __version__
from .state import SCHEMA_VERSION


def code_schema_version() -> int:
    """The schema this code reads and writes: its highest migration."""
    return SCHEMA_VERSION


@cache
def build_info() -> dict[str, str | int]:
    libc, libc_version = platform.libc_ver()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "python_path": sys.executable,
        "platform": f"{sys.platform}-{platform.machine()}",
        "libc": f"{libc} {libc_version}".strip() or "unknown",
        "schema": code_schema_version(),
    }


def one_line(store_schema: int | None = None) -> str:
    """`dicomgate 0.1.0 (Python 3.11.7, linux-x86_64, schema 580)`."""
    b = build_info()
    schema = f"schema {b['schema']}"
    if store_schema is not None and store_schema != b["schema"]:
        schema += f", store at {store_schema}"
    return f"dicomgate {b['version']} (Python {b['python']}, {b['platform']}, {schema})"
