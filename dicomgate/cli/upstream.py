"""push --once (drain upstream work now, with progress) and upload-state (per instance)."""

from __future__ import annotations

import argparse
import sys
import time

from .. import logs
from ..app import App, Progress
from ..state.kinds import UPSTREAM_KINDS, Upload
from ..state.names import TaskState
from ..upstream import requeue_rejected
from .context import (
    EXIT_USAGE,
    CommandError,
    audit,
    daemon_pid,
    open_app,
    print_json,
    print_table,
    when,
)


def _upstream_app(args: argparse.Namespace, progress: Progress | None = None) -> App:
    app = open_app(args, progress)
    if app.config.upstream is None:
        raise CommandError(f"no [upstream] section in {app.config.path}: delivery to the "
                           "cloud is off", EXIT_USAGE)
    return app


def cmd_push(args: argparse.Namespace) -> int:
    if not args.once:
        raise CommandError("the daemon pushes continuously; `dicomgate push --once` drains "
                           "what is queued now", EXIT_USAGE)
    app = _upstream_app(args, progress=_progress_printer())
    logs.configure("warning", "console", sys.stderr)
    if daemon_pid(app.config):
        print(f"note: the daemon (pid {daemon_pid(app.config)}) is running and shares this "
              "work", file=sys.stderr)
    store = app.store
    if args.retry_rejected:
        studies = requeue_rejected(store, args.study)
        message = f"{len(studies)} study(ies) with rejected instances queued again"
        audit(app, "resend_rejected", f"study:{args.study}" if args.study else "studies:rejected",
              "ok" if studies else "refused", message)
        print(message)
    if args.study:  # that study alone, no other upload taken along
        app.features["upstream"].upload.batching = False
    studies = [args.study] if args.study else store.delivery.studies_with_backlog()
    for uid in studies:
        store.tasks.enqueue(Upload(uid), reopen=True, study_uid=uid)
    store.tasks.make_due(UPSTREAM_KINDS)
    kinds = [Upload.kind] if args.study else list(UPSTREAM_KINDS)
    return _drain(app, kinds, args)


def _drain(app: App, kinds: list[str], args: argparse.Namespace) -> int:
    store, pool = app.store, app.pool
    deadline = time.monotonic() + args.timeout
    failed = done = 0
    pool.keep_leases()  # a daemon running beside us must not take what runs here
    try:
        while time.monotonic() < deadline:
            if args.study:
                task = store.tasks.claim_key(Upload.kind, Upload(args.study).key(), pool.owner,
                                             pool.cfg.lease)
            else:
                task = store.tasks.claim(kinds, pool.owner, pool.cfg.lease)
            if task is None:
                break
            print(f"{task.kind} {task.key} ...", flush=True)
            state = pool.run(task)
            after = store.tasks.get(task.id)
            if state is TaskState.DONE:
                done += 1
                print(f"  done: {after.result if after else ''}")
            else:
                failed += 1
                print(f"  {'DEAD' if state is TaskState.DEAD else 'will retry'}: "
                      f"{after.last_error if after else ''}")
    finally:
        pool.stop(grace=0)
    print(f"{done} task(s) done, {failed} failed")
    return 0 if failed == 0 else 1


def _progress_printer():
    tty = sys.stdout.isatty()

    def show(study_uid: str, s) -> None:
        line = (f"  {study_uid}: {s.uploaded}/{s.total} instances, "
                f"{s.uploaded_bytes / 1e6:.1f}/{s.total_bytes / 1e6:.1f} MB, "
                f"{s.requests} request(s)")
        if s.rejected:
            line += f", {s.rejected} rejected"
        if tty:
            print("\r" + line, end="", flush=True)
            if s.uploaded + s.rejected >= s.total:
                print()
        else:
            print(line, flush=True)
    return show


def cmd_upload_state(args: argparse.Namespace) -> int:
    app = open_app(args)
    if args.rejected:
        rows = app.store.delivery.rejected()
        if args.json:
            print_json(rows)
            return 0
        print_table([{**r, "updated_at": when(r["updated_at"])} for r in rows],
                    ["study_uid", "sop_uid", "updated_at", "error"])
        return 0
    if not args.study_uid:
        raise CommandError("give a study UID, or --rejected", EXIT_USAGE)
    study = app.store.instances.study(args.study_uid)
    if study is None:
        raise CommandError(f"study {args.study_uid} is unknown to this gateway (nothing "
                           "received for it)")
    rows = app.store.delivery.study_upload_rows(args.study_uid)
    counts = app.store.instances.study_counts(args.study_uid)
    task = app.store.tasks.find(Upload.kind, Upload(args.study_uid).key())
    if args.json:
        print_json({"study": study, "counts": counts,
                    "task": task.public() if task else None, "instances": rows})
        return 0
    expected = study.get("expected_count")
    print(f"study {args.study_uid}: {study['state']}, {len(rows)} instance(s) in the spool"
          + (f", the PACS has {expected}" if expected is not None else ""))
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if task:
        print(f"  upload task {task.id}: {task.state}, {task.attempts} attempt(s)"
              + (f", next {when(task.run_after)}" if task.state is TaskState.PENDING else "")
              + (f": {task.last_error}" if task.last_error else "")
              + (f": {task.result}" if task.result and not task.last_error else ""))
    print()
    print_table([{"sop_uid": r["sop_uid"], "size": r["size"], "state": r["state"],
                  "attempts": r["attempts"] or 0, "last_sent": when(r["last_at"]),
                  "delivered": when(r["delivered_at"]), "error": r["error"]} for r in rows],
                ["sop_uid", "size", "state", "attempts", "last_sent", "delivered", "error"])
    return 0
