"""Schema migrations, one module per owner: each defines MIGRATIONS = [(version, name, SQL)].

Never edit an applied migration: add a new one, numbered above every existing one: the
store's schema version is its highest applied migration, and the installer and `dicomgate
version` compare that number (versions up to 580 were once grouped by owner; that is history).
Modules are found by name (m*.py), so adding a file is enough.
"""

from __future__ import annotations

import importlib
import pkgutil


def all_migrations() -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m"):
            out.extend(importlib.import_module(f"{__name__}.{info.name}").MIGRATIONS)
    versions = [v for v, _, _ in out]
    dupes = {v for v in versions if versions.count(v) > 1}
    if dupes:
        raise RuntimeError(f"duplicate migration versions {sorted(dupes)}")
    return sorted(out)
