"""Task handlers by kind. Feature packages register theirs at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..state import Task
from ..state.kinds import KINDS

Handler = Callable[[Task], "str | None"]


@dataclass(frozen=True)
class Registration:
    kind: str
    handler: Handler
    max_attempts: int | None = None  # None: tasks.max_attempts from the config


class Registry:
    def __init__(self) -> None:
        self._by_kind: dict[str, Registration] = {}

    def register(self, kind: str, handler: Handler, max_attempts: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"task kind {kind!r} is not declared in dicomgate/state/kinds.py")
        if kind in self._by_kind:
            raise ValueError(f"a handler for task kind {kind!r} is already registered")
        self._by_kind[kind] = Registration(kind, handler, max_attempts)

    def get(self, kind: str) -> Registration | None:
        return self._by_kind.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)
