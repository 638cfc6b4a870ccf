"""Schema migrations, one module per owner: each defines MIGRATIONS = [(version, name, SQL)].

Never edit an applied migration: add a new one. Version ranges by owner keep parallel
work from colliding: 1-99 foundation, 100-199 images, 200-299 reports, 300-399 upstream,
400-499 shim, 500-599 operations. Modules are found by name (m*.py), so adding a file
is enough.
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
