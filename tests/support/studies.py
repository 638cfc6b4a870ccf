"""Synthetic studies as files on disk (the study makers themselves are dicomgate.sandbox's:
the demo loads its hospital PACS with them)."""

from __future__ import annotations

from pathlib import Path


def write_study(instances: list[bytes], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(instances):
        p = folder / f"{i:05d}.dcm"
        p.write_bytes(data)
        paths.append(p)
    return paths
