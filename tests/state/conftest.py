"""Fixtures for the state store's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicomgate.state import Store


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(tmp_path / "state" / "state.db")
    yield s
    s.close()
