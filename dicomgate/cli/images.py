"""echo, pull, study show: the PACS administrator's view of image retrieval."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from typing import Any

from .. import logs
from ..app import App
from ..images import PacsClient, PacsRefused, PacsUnavailable, present_sop_uids
from ..images import build as build_images
from ..state.kinds import Retrieve
from ..state.names import StudyState, TaskState
from ..tasks import Fatal, RetryLater
from .context import (
    EXIT_USAGE,
    CommandError,
    daemon_pid,
    open_app,
    print_json,
    print_table,
    when,
)


def _pacs(app: App) -> PacsClient:
    if app.config.pacs is None:
        raise CommandError(f"no [pacs] section in {app.config.path}: add one with the PACS "
                           "ae_title, host and port", EXIT_USAGE)
    return PacsClient(app.config.dicom, app.config.pacs)


# -- echo -------------------------------------------------------------------------------
def cmd_echo(args: argparse.Namespace) -> int:
    app = open_app(args)
    pacs = _pacs(app)
    try:
        seconds = pacs.echo()
    except (PacsUnavailable, PacsRefused) as exc:
        raise CommandError(f"C-ECHO failed: {exc}") from None
    print(f"C-ECHO {pacs.where} as {app.config.dicom.ae_title}: OK, "
          f"{seconds * 1000:.1f} ms round trip")
    return 0


# -- pull -------------------------------------------------------------------------------
def cmd_pull(args: argparse.Namespace) -> int:
    app = open_app(args)
    cfg = app.config
    _pacs(app)  # says what is missing without [pacs]
    tty = sys.stderr.isatty()
    logs.configure("warning" if tty else cfg.log.level, cfg.log.format, stream=sys.stderr)
    progress = Progress(app, args.study_uid, args.accession, tty)
    if daemon_pid(cfg) is not None:
        result = _via_daemon(app, args, progress)
    else:
        result = _here(app, args, progress)
    progress.done()
    return _report(app, args, result)


def _here(app: App, args: argparse.Namespace, progress: Progress) -> str:
    """No daemon: run our own Portal AET while the PACS sends."""
    images = build_images(app.config, app.store, progress=progress.moved)
    retriever = images.retriever
    assert retriever is not None  # _pacs(app) checked [pacs]
    scp = images.portal_aet()
    try:
        scp.start()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = retriever.retrieve(study_uid=args.study_uid,
                                               accession_no=args.accession,
                                               hospital_id=app.config.gateway.hospital_id)
        except (PacsUnavailable, PacsRefused, RetryLater, Fatal) as exc:
            box["error"] = str(exc)
        except Exception as exc:  # shown as one line, never a traceback
            box["error"] = f"internal error: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, name="pull", daemon=True)
    worker.start()
    progress.show()
    try:
        worker.join()  # the C-MOVE's pending responses drive the progress line
    finally:
        scp.stop()
    if "error" in box:
        progress.done()
        raise CommandError(box["error"])
    return box["result"]


def _via_daemon(app: App, args: argparse.Namespace, progress: Progress) -> str:
    """The daemon's SCP holds the port: hand it the work through the queue and wait."""
    cfg = app.config
    tasks = app.store.tasks
    want = Retrieve(study_uid=args.study_uid or None,
                    accession_no=None if args.study_uid else args.accession,
                    hospital_id=cfg.gateway.hospital_id, reason="dicomgate pull")
    with app.store.transaction():
        old = tasks.find(Retrieve.kind, want.key())
        if old is not None and old.state is TaskState.PENDING:  # maybe in backoff: make it due now
            tasks.cancel(old.id, "superseded by dicomgate pull")
        enq = tasks.enqueue(want, reopen=True, study_uid=args.study_uid)
    first = tasks.get(enq.id)
    assert first is not None
    deadline = time.monotonic() + cfg.pacs.move_timeout + 600
    seen_running = first.state is TaskState.RUNNING
    while time.monotonic() < deadline:
        task = tasks.get(enq.id)
        if task is None:
            raise CommandError(f"retrieve task {enq.id} disappeared from the queue")
        seen_running |= task.state is TaskState.RUNNING
        fresh = task.updated_at > first.updated_at or seen_running
        if task.state is TaskState.DONE and fresh:
            return task.result or ""
        if task.state in (TaskState.DEAD, TaskState.CANCELLED) and fresh:
            raise CommandError(f"{task.last_error} (task {task.id}; after fixing: dicomgate "
                               f"tasks retry {task.id})")
        if task.state is TaskState.PENDING and task.last_error and fresh and seen_running:
            raise CommandError(f"{task.last_error} (the daemon retries task {task.id} at "
                               f"{when(task.run_after)})")
        progress.show()
        time.sleep(0.3)
    raise CommandError(f"the daemon did not finish retrieve task {enq.id} in time; see: "
                       "dicomgate tasks list --kind retrieve")


# A pulled study is done when every instance is here or already with the cloud.
DONE_STATES = (StudyState.COMPLETE, StudyState.DELIVERED)


def _report(app: App, args: argparse.Namespace, result: str) -> int:
    uids = ([args.study_uid] if args.study_uid
            else app.store.instances.studies_of_accession(args.accession))
    ok = bool(uids)
    for uid in uids:
        study = app.store.instances.study(uid) or {}
        have = len(present_sop_uids(app.store, uid))
        print(f"study {uid}: {study.get('state', 'unknown')}, {have}/"
              f"{study.get('expected_count') or '?'} instances in the spool")
        ok &= study.get("state") in DONE_STATES
    if not ok:
        raise CommandError(f"not complete: {result or 'no study found'}")
    return 0


class Progress:
    """received / expected on a TTY (stderr); a log event every few seconds otherwise.

    Here, the C-MOVE's pending responses (completed sub-operations) drive it (`moved`);
    through the daemon, which moves in its own process, the store's counts do (`show`)."""

    def __init__(self, app: App, study_uid: str | None, accession: str | None, tty: bool):
        self.app, self.study_uid, self.accession, self.tty = app, study_uid, accession, tty
        self._last_log = 0.0
        self._drawn = False
        self._moving: dict[str, tuple[int, int]] = {}  # study_uid: (held, expected)
        self._lock = threading.Lock()

    def moved(self, study_uid: str, held: int, expected: int) -> None:
        with self._lock:
            self._moving[study_uid] = (held, expected)
            have = sum(h for h, _ in self._moving.values())
            expected = sum(e for _, e in self._moving.values())
            self._draw(have, expected or None)

    def counts(self) -> tuple[int, int | None]:
        inst = self.app.store.instances
        uids = [self.study_uid] if self.study_uid else inst.studies_of_accession(
            self.accession or "")
        have, expected = 0, 0
        for uid in uids:
            have += len(present_sop_uids(self.app.store, uid))
            expected += (inst.study(uid) or {}).get("expected_count") or 0
        return have, expected or None

    def show(self) -> None:
        have, expected = self.counts()
        with self._lock:
            self._draw(have, expected)

    def _draw(self, have: int, expected: int | None) -> None:
        what = self.study_uid or f"accession {self.accession}"
        if self.tty:
            bar = ""
            if expected:
                filled = int(30 * min(have, expected) / expected)
                bar = "[" + "#" * filled + "." * (30 - filled) + "] "
            sys.stderr.write(f"\r{bar}{have}/{expected or '?'} instances  {what}  ")
            sys.stderr.flush()
            self._drawn = True
        elif time.monotonic() - self._last_log >= 5:
            self._last_log = time.monotonic()
            from structlog import get_logger

            get_logger("dicomgate.cli").info("pull.progress", received=have,
                                             expected=expected, study_uid=self.study_uid,
                                             accession_no=self.accession)

    def done(self) -> None:
        if self._drawn:
            self.show()
            sys.stderr.write("\n")
            self._drawn = False


# -- study show -------------------------------------------------------------------------
def cmd_study_show(args: argparse.Namespace) -> int:
    app = open_app(args)
    store = app.store
    study = store.instances.study(args.uid)
    if study is None:
        raise CommandError(f"no study {args.uid} in the state store (to fetch it: dicomgate "
                           f"pull --study-uid {args.uid})")
    rows = [dataclasses.asdict(r) for r in store.instances.of_study(args.uid)]
    tasks = [{"id": t.id, "kind": t.kind, "key": t.key, "state": t.state,
              "attempts": t.attempts, "result": t.result, "error": t.last_error}
             for t in store.tasks.list(study_uid=args.uid)]
    if args.json:
        print_json({"study": study, "instances": rows, "tasks": tasks,
                    "dicom_events": [dataclasses.asdict(e) for e in
                                     store.dicom_events.of_study(args.uid)]})
        return 0
    print(f"study {study['study_uid']}")
    print(f"  state:     {study['state']}")
    print(f"  expected:  {study['expected_count'] if study['expected_count'] else '?'}")
    print(f"  accession: {study['accession_no'] or '-'}   exam: {study['exam_id'] or '-'}")
    print(f"  updated:   {when(study['updated_at'])}")
    if study["detail"]:
        print("  detail:    " + ", ".join(f"{k}: {v}" for k, v in study["detail"].items()))
    events = [dataclasses.asdict(e) for e in store.dicom_events.of_study(args.uid)]
    _print_events(events)
    print(f"\ninstances ({len(rows)}):")
    for r in rows:
        r["received"] = when(r["received_at"])
        r["delivered"] = when(r["delivered_at"])
    # state is the delivery state too (received, uploaded, delivered, rejected, purged);
    # error is the cloud's reason for a rejection.
    print_table(rows, ["sop_uid", "series_uid", "transfer_syntax", "size", "sha256", "path",
                       "state", "received", "delivered", "error"])
    print(f"\ntasks ({len(tasks)}):")
    print_table(tasks, ["id", "kind", "key", "state", "attempts", "result", "error"])
    return 0


def _print_events(events: list[dict[str, Any]]) -> None:
    """Repair steps, failed C-MOVE sub-operations and what the Portal AET rejected."""
    if not events:
        return
    print(f"\nretrieve events ({len(events)}): repair steps, failed sub-operations, "
          "rejections by the Portal AET")
    for e in events:  # the reason in full, on its own line: it says what to do
        fields = " ".join(f"{k}={e[k]}" for k in ("sop_uid", "sop_class_uid",
                                                  "transfer_syntaxes", "calling_aet", "status")
                          if e.get(k))
        print(f"  {when(e['at'])}  {e['kind']}  {fields}".rstrip())
        print(f"      {e['reason']}")
