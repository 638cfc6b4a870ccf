"""The names packages share through the state store besides task kinds: facts and the states
of tasks, exams, studies and instances. Declared once, here; a renamed member is a type
error (and an AttributeError) wherever it is used, never a silently empty console.

They are `StrEnum`s: a member is the string stored in SQLite, so rows read back compare
equal to them.
"""

from __future__ import annotations

from enum import StrEnum


class Fact(StrEnum):
    """Facts: the latest observation of something, kept by name (`Store.facts`)."""

    PACS_ECHO = "images.pacs_echo"  # images.echo writes; retrieve, status, console read
    MOVE_STALLED = "images.move_stalled"  # images.retrieve
    LIST_MOVES = "images.list_moves"  # {PACS: verdict}: whether a C-MOVE of a UID list works
    UPSTREAM_REACHABILITY = "upstream.reachability"  # upstream.transport; console reads
    REPORTS_POLL_ERRORS = "reports.poll_errors"  # {type: error} of the last scheduled poll
    REPORTS_RECONCILE = "reports.reconcile"  # the last reconciliation's result
    REPORTS_VIEW_CHECK = "reports.view_check"  # the last view check's result
    TASKS_WRITE_PROBE = "tasks.write_probe"  # written to learn whether the store is writable
    SHIM_ID_HASH_SALT = "shim.id_hash_salt"  # state.sessions


def declared(enum: type[StrEnum], value: str) -> str:
    """`value` as a member of `enum`; a name nobody declared is a ValueError naming the
    states there are, never a row no reader looks for."""
    try:
        return enum(value).value
    except ValueError:
        raise ValueError(f"{value!r} is not declared in {enum.__name__} (state/names.py): one of "
                         f"{[m.value for m in enum]}") from None


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"


class ExamState(StrEnum):
    NEW = "new"
    QUARANTINED = "quarantined"
    SYNCED = "synced"
    REPORTED = "reported"
    WITHDRAWN = "withdrawn"
    DELETED = "deleted"


class StudyState(StrEnum):
    NEW = "new"
    RETRIEVING = "retrieving"
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    DELIVERED = "delivered"
    WITHDRAWN = "withdrawn"
    DELETED = "deleted"


class InstanceState(StrEnum):
    RECEIVED = "received"
    UPLOADED = "uploaded"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    PURGED = "purged"
    DELETED = "deleted"
