"""The task kinds: the one contract between the feature packages, declared once.

Each kind is a frozen dataclass: its name (`kind`), its key builder (`key()`) and its typed
payload (the fields). Producers build one and pass it to `Store.tasks.enqueue`; consumers
register their handler for `Kind.kind`. The store refuses anything not declared here, and a
payload is checked when it is built, so an unknown kind or a malformed payload cannot be
queued. The JSON on disk is `to_json()`: the field names as they always were, optional
fields (default None) left out when unset, so tasks queued by older versions still read.
`docs/internals.md` shows the table `table()` prints (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A kind's field types, resolved once (typing.get_type_hints evaluates every annotation
    string each call: ~0.2 ms per task built, once per received instance)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


class MalformedTask(ValueError):
    """A task built with a field of the wrong type or missing: a bug in the producer."""


@dataclass(frozen=True)
class TaskKind:
    kind: ClassVar[str]
    key_pattern: ClassVar[str]  # for the docs table
    flow: ClassVar[str]  # producers -> consumer, for the docs table

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise MalformedTask(f"{self.kind} task: field {f.name!r} is {value!r}; "
                                    f"expected {_describe(hints[f.name])}")

    def key(self) -> str:
        """The task's key: a function of the fields alone, so equal work has one key."""
        raise NotImplementedError

    def supersedes(self) -> tuple[str, ...]:
        """Keys of this kind whose pending task this one replaces (none by default)."""
        return ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue  # optional and unset: absent, as producers always wrote it
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Retrieve(TaskKind):
    """Fetch a study's images from the PACS (C-MOVE, or HTTP when image_paths is set)."""

    kind: ClassVar[str] = "retrieve"
    key_pattern: ClassVar[str] = ("`study:<StudyInstanceUID>` or "
                                  "`acc:<hospitalId>:<accessionNo>`")
    flow: ClassVar[str] = ("reports (type 1 after settle delay, type 3 re-check), shim (after "
                           "deletion), CLI `pull` → images")
    study_uid: str | None = None
    accession_no: str | None = None
    hospital_id: str | None = None
    exam_id: int | None = None
    image_paths: tuple[str, ...] | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.study_uid and not (self.hospital_id and self.accession_no):
            raise MalformedTask("retrieve task: needs study_uid, or hospital_id and "
                                "accession_no")

    def key(self) -> str:
        if self.study_uid:
            return study_key(self.study_uid)
        return accession_key(str(self.hospital_id), str(self.accession_no))

    def supersedes(self) -> tuple[str, ...]:
        """Once the study UID is known, the exam's retrieve queued by accession number
        (before it was) is this one: one study, one retrieve."""
        if self.study_uid and self.hospital_id and self.accession_no:
            return (accession_key(self.hospital_id, self.accession_no),)
        return ()


@dataclass(frozen=True)
class Upload(TaskKind):
    """Deliver a study's spooled instances to the cloud (STOW-RS, then QIDO-RS confirm)."""

    kind: ClassVar[str] = "upload"
    key_pattern: ClassVar[str] = "`study:<StudyInstanceUID>`"
    flow: ClassVar[str] = ("images (enqueued with `reopen=True` as instances land, and when "
                           "the study completes), CLI `push` → upstream")
    study_uid: str

    def key(self) -> str:
        return study_key(self.study_uid)


@dataclass(frozen=True)
class PushReport(TaskKind):
    """Send one report version to the cloud (the record is read from `exam_versions`)."""

    kind: ClassVar[str] = "push_report"
    key_pattern: ClassVar[str] = "`exam:<exam_id>:v<version>`"
    flow: ClassVar[str] = "reports (types 3, 4) → upstream (reads `exam_versions`)"
    exam_id: int
    version: int

    def key(self) -> str:
        return f"exam:{self.exam_id}:v{self.version}"


@dataclass(frozen=True)
class Withdraw(TaskKind):
    """Tell the cloud an exam was refunded at the PACS."""

    kind: ClassVar[str] = "withdraw"
    key_pattern: ClassVar[str] = "`exam:<hospitalId>:<accessionNo>`"
    flow: ClassVar[str] = "reports (type 2) → upstream"
    hospital_id: str
    accession_no: str
    exam_id: int | None
    refund_time: str | None

    def key(self) -> str:
        return f"exam:{self.hospital_id}:{self.accession_no}"


@dataclass(frozen=True)
class Deletion(TaskKind):
    """Tell the cloud images were deleted at the PACS."""

    kind: ClassVar[str] = "deletion"
    key_pattern: ClassVar[str] = "`del:<hospitalId>:<accessionNo>:<operateDateTime>`"
    flow: ClassVar[str] = "shim → upstream"
    hospital_id: str
    accession_no: str
    study_uids: tuple[str, ...]
    sop_uids: tuple[str, ...]
    operate_time: str
    deletion_id: int

    def key(self) -> str:
        return f"del:{self.hospital_id}:{self.accession_no}:{self.operate_time}"


@dataclass(frozen=True)
class SpoolPurge(TaskKind):
    """Nodes sharing a store: remove one node's spool copies of a deletion's instances (the
    node that received the deletion can reach only its own spool). Runs on `node` alone."""

    kind: ClassVar[str] = "spool_purge"
    key_pattern: ClassVar[str] = "`purge:<node>:<deletion id>`"
    flow: ClassVar[str] = ("shim (a deletion whose files are on another node) → that node "
                           "(nodes.py)")
    node: str
    deletion_id: int

    def key(self) -> str:
        return f"purge:{self.node}:{self.deletion_id}"


KINDS: dict[str, type[TaskKind]] = {k.kind: k for k in (Retrieve, Upload, PushReport,
                                                         Withdraw, Deletion, SpoolPurge)}
# What upstream delivers: `push` makes these due, `status` counts them.
UPSTREAM_KINDS = (Upload.kind, PushReport.kind, Withdraw.kind, Deletion.kind)


def study_key(study_uid: str) -> str:
    return f"study:{study_uid}"


def accession_key(hospital_id: str, accession_no: str) -> str:
    return f"acc:{hospital_id}:{accession_no}"


def decode(kind: str, payload: Any) -> TaskKind:
    """A stored payload as its kind, checked as when it was built; MalformedTask names the
    field that does not fit (never a default in its place)."""
    cls = KINDS.get(kind)
    if cls is None:
        raise MalformedTask(f"unknown task kind {kind!r} (known: {sorted(KINDS)})")
    if not isinstance(payload, dict):
        raise MalformedTask(f"{kind} task: payload is {type(payload).__name__}; expected a "
                            "JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise MalformedTask(f"{kind} task: field {unknown[0]!r} is not one of {kind}'s "
                            f"fields ({', '.join(fields)})")
    args: dict[str, Any] = {}
    for name, f in fields.items():
        if name in payload:
            value = payload[name]
            args[name] = tuple(value) if isinstance(value, list) else value
        elif f.default is dataclasses.MISSING:
            raise MalformedTask(f"{kind} task: field {name!r} is missing; expected "
                                f"{_describe(_hints(cls)[name])}")
    return cls(**args)


def check(task: TaskKind) -> None:
    """The store's guard: only the kinds declared here may be queued."""
    if KINDS.get(getattr(task, "kind", None)) is not type(task):  # type: ignore[arg-type]
        raise MalformedTask(f"unknown task kind {getattr(task, 'kind', task)!r}: "
                            f"declare it in dicomgate/state/kinds.py (known: {sorted(KINDS)})")


def table() -> str:
    """The Markdown table in docs/internals.md ("Task kinds")."""
    rows = ["| kind | key | payload | producer → consumer |", "|---|---|---|---|"]
    for cls in KINDS.values():
        fields = ", ".join(f'"{f.name}"' + ("?" if f.default is None else "")
                           for f in dataclasses.fields(cls))
        rows.append(f"| `{cls.kind}` | {cls.key_pattern} | `{{{fields}}}` | {cls.flow} |")
    return "\n".join(rows)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


if __name__ == "__main__":
    print(table())
