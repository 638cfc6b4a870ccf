"""The names packages share through the state store besides task kinds: facts and the states
of tasks, exams, studies, instances and doctor sessions. Declared once, here; a renamed
member is a type error (mypy, run by ./scripts/test) and an AttributeError wherever it is
used, never a silently empty console.

They are `StrEnum`s: a member is the string stored in the database, so rows read back
compare equal to them. The store's methods take members only: a plain string, even one
spelling a member's value, is a TypeError at the boundary (`member`), so a call site that
escapes the type checker still cannot store or search a name by hand.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


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


def member(enum: type[E], value: object) -> E:
    """`value`, which must be a member of `enum`; anything else (a plain string included)
    is a TypeError naming the enum to use."""
    if isinstance(value, enum):
        return value
    raise TypeError(f"{value!r} is not a member of {enum.__name__}: pass one of "
                    f"dicomgate.state.names.{enum.__name__}."
                    f"{{{', '.join(m.name for m in enum)}}}")


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


class SessionState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
