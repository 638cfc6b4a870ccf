"""Fixtures every test package may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import write_config


@pytest.fixture
def minimal_config(tmp_path: Path) -> Path:
    """[gateway] + [dicom] only, state under tmp_path, SCP on a port nobody uses."""
    return write_config(tmp_path / "dicomgate.toml", f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp_path / 'state'}"

[dicom]
ae_title = "DICOMGATE"
bind = "127.0.0.1"
port = 1
min_free_disk = "1MB"
""")

