"""tasks list / tasks retry."""

from __future__ import annotations

import argparse

from ..state.names import TaskState
from .context import EXIT_USAGE, CommandError, audit, open_app, print_json, print_table, when


def cmd_list(args: argparse.Namespace) -> int:
    app = open_app(args, create=False)
    tasks = app.store.tasks.list(state=args.state, kind=args.kind, limit=args.limit)
    if args.json:
        print_json([t.public() for t in tasks])
        return 0
    rows = [{"id": t.id, "kind": t.kind, "key": t.key, "state": t.state,
             "attempts": t.attempts,
             "due": when(t.run_after) if t.state is TaskState.PENDING else None,
             "updated": when(t.updated_at), "error": t.last_error} for t in tasks]
    print_table(rows, ["id", "kind", "key", "state", "attempts", "due", "updated", "error"])
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    if (args.id is None) == (not args.all_dead):
        raise CommandError("give a task ID or --all-dead (not both)", EXIT_USAGE)
    app = open_app(args)
    if args.all_dead:
        n = app.store.tasks.retry_all_dead()
        message = f"{n} dead task(s) queued to run again"
        audit(app, "retry_all_dead", "tasks:dead", "ok" if n else "refused", message)
        print(message)
        return 0
    subject = f"task:{args.id}"
    task = app.store.tasks.get(args.id)
    if task is None:
        audit(app, "retry_task", subject, "refused", f"no task {args.id}")
        raise CommandError(f"no task {args.id} (see: dicomgate tasks list)")
    if not app.store.tasks.retry(args.id):
        message = f"task {args.id} is {task.state}: only dead or cancelled tasks can be retried"
        audit(app, "retry_task", subject, "refused", message)
        raise CommandError(message)
    message = f"task {args.id} ({task.kind} {task.key}) queued to run again"
    audit(app, "retry_task", subject, "ok", message)
    print(message)
    return 0
