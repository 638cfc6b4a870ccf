"""More upload tasks for the worker that runs one, claimed through the worker pool: it renews
their leases with its own and records each one's outcome as it records a task it runs
(tasks/workers.py `claim_more`, `finish`, `give_back`).

What one batch took is kept here, so that what is left unfinished when the batch ends (a
bug, a shutdown) is handed back untouched and runs again at once.
"""

from __future__ import annotations

from ..state import Task
from ..state.kinds import Upload
from ..tasks import Batching


class BatchClaims:
    def __init__(self, pool: Batching):
        self.pool = pool
        self.tasks: dict[int, Task] = {}

    def claim(self, limit: int) -> list[Task]:
        """Up to `limit` due upload tasks besides the one already running."""
        got = self.pool.claim_more(Upload.kind, limit)
        self.tasks.update((t.id, t) for t in got)
        return got

    def give_back(self, task: Task, why: str) -> None:
        """Untouched (the attempt does not count): due again at once, for another worker."""
        if self.tasks.pop(task.id, None) is not None:
            self.pool.give_back(task, why)

    def finish(self, task: Task, outcome: str | Exception) -> None:
        """Record a result, or the exception its handler would have raised, as the worker
        records a task it runs; once (a task this batch no longer holds is left alone)."""
        if self.tasks.pop(task.id, None) is not None:
            self.pool.finish(task, outcome)

    def close(self) -> None:
        """Hand back what was not finished (it runs again at once)."""
        left, self.tasks = list(self.tasks.values()), {}
        for task in left:
            self.pool.give_back(task, "its batch ended before it did; it runs again")
