"""Task handlers by kind, and the lanes (thread groups) they run in. Feature packages
register theirs at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..state import Task
from ..state.kinds import KINDS, TaskKind

# A handler gets the payload as its kind (decoded once by the store) and the task row
# (id, key, attempts: for messages); it returns a one-line result or raises (tasks/errors.py).
Handler = Callable[[TaskKind, Task], "str | None"]

# Kinds registered without a lane share this one (sized by tasks.workers).
GENERAL = "general"


@dataclass(frozen=True)
class Registration:
    kind: str
    handler: Handler
    max_attempts: int | None = None  # None: tasks.max_attempts from the config
    lane: str = GENERAL


class Registry:
    def __init__(self) -> None:
        self._by_kind: dict[str, Registration] = {}
        self._lanes: dict[str, int] = {}

    def register(self, kind: str, handler: Handler, max_attempts: int | None = None,
                 lane: str = GENERAL) -> None:
        if kind not in KINDS:
            raise ValueError(f"task kind {kind!r} is not declared in dicomgate/state/kinds.py")
        if kind in self._by_kind:
            raise ValueError(f"a handler for task kind {kind!r} is already registered")
        self._by_kind[kind] = Registration(kind, handler, max_attempts, lane)

    def add_lane(self, name: str, threads: int) -> None:
        """A group of `threads` workers of its own: work of its kinds (a hung C-MOVE)
        can occupy only these, never the threads of other kinds."""
        self._lanes[name] = max(1, threads)

    def get(self, kind: str) -> Registration | None:
        return self._by_kind.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def lanes(self, general_threads: int) -> dict[str, tuple[list[str], int]]:
        """{lane: (kinds, threads)} for every lane that has kinds."""
        out: dict[str, tuple[list[str], int]] = {}
        for reg in sorted(self._by_kind.values(), key=lambda r: r.kind):
            lane = reg.lane if reg.lane in self._lanes else GENERAL
            size = general_threads if lane == GENERAL else self._lanes[lane]
            out.setdefault(lane, ([], size))[0].append(reg.kind)
        return out
