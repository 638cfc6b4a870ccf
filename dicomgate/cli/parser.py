"""The command line's shape: every command and its arguments, and which function runs it.

A command's module is imported only when that command runs (`main` resolves "module:function"):
the feature packages import pydicom, pynetdicom, requests and the ODBC driver manager, which
`version`, `check-config` and `migrate` do not need, and those start in a fraction of the time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..buildinfo import one_line
from ..state import STATES
from ..state.exams import EXAM_STATES
from ..state.names import ExamState, SessionState, TaskState
from .context import EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2 with one clear line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dicomgate", description="Hospital-side gateway of the imaging cloud.")
    p.add_argument("--config", metavar="PATH",
                   help="configuration file (default: $DICOMGATE_CONFIG, else "
                        "/etc/dicomgate/dicomgate.toml)")
    p.add_argument("--version", action="version", version=one_line())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _commands(sub)
    return p


def _commands(sub: argparse._SubParsersAction) -> None:
    # core.py, check_config.py
    p = sub.add_parser("check-config", help="validate the configuration file")
    p.add_argument("path", nargs="?", help="file to check (default: --config)")
    p.set_defaults(func="check_config:cmd_check_config")

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.set_defaults(func="core:cmd_run")

    p = sub.add_parser("status", help="what the gateway knows right now")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="core:cmd_status")

    # migrate.py
    p = sub.add_parser("migrate", help="back the state store up, then bring its schema up "
                                       "to this version's (the daemon must be stopped)")
    p.add_argument("--backup-dir", metavar="DIR",
                   help="where the copy goes (default: <state_dir>/backups)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="migrate:cmd_migrate")

    # version.py
    p = sub.add_parser("version", help="version, Python, platform and schema versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func="version:cmd_version")

    # tasks.py
    tsub = _actions(sub, "tasks", help="inspect and retry queued work")

    lp = tsub.add_parser("list", help="list tasks, newest first")
    lp.add_argument("--state", type=TaskState, choices=STATES)
    lp.add_argument("--kind")
    lp.add_argument("--limit", type=int, default=100)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func="tasks:cmd_list")

    rp = tsub.add_parser("retry", help="run a dead or cancelled task again now")
    rp.add_argument("id", nargs="?", type=int)
    rp.add_argument("--all-dead", action="store_true", help="every dead task")
    rp.set_defaults(func="tasks:cmd_retry")

    # demo.py
    p = sub.add_parser("demo", help="run the daemon between a sandbox hospital and cloud")
    p.add_argument("--dir", type=Path, help="working directory to keep (default: a temp dir, "
                                            "removed at the end)")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop once every exam is delivered (exit 1 if one is not)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for delivery (default 300)")
    p.set_defaults(func="demo:cmd_demo")

    # reports.py
    p = sub.add_parser("sync", help="read exams and reports from the PACS now (one pass), "
                       "or check the view (--check)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true",
                      help="one pass now (the daemon polls by itself every reports.poll_interval)")
    mode.add_argument("--check", action="store_true",
                      help="check the view before trusting it: columns, time formats, the "
                           "newest rows against the record rules (exit 1 on a problem)")
    p.add_argument("--type", type=int, action="append",
                   help="event type: 1 performed, 2 refunded, 3 audited, 4 modified "
                        "(repeatable; default all)")
    p.add_argument("--since", metavar="T", help="window start, e.g. '2024-05-01 08:00:00' "
                   "(local time); the watermarks are left alone")
    p.add_argument("--until", metavar="T", help="window end (default now; needs --since)")
    p.add_argument("--accession", metavar="ACC", help="one accession number, no time limit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="reports:cmd_sync")

    p = sub.add_parser("reconcile", help="compare a past period of the PACS with the state "
                       "store; re-read what the time windows missed")
    p.add_argument("--since", metavar="T", help="period start (local time; default: "
                   "yesterday 00:00)")
    p.add_argument("--until", metavar="T", help="period end (default: --since + 1 day, or "
                   "today 00:00)")
    p.add_argument("--report-only", action="store_true",
                   help="only list what was missed (exit 1 if anything was)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="reports:cmd_reconcile")

    esub = _actions(sub, "exams", help="exams and reports read from the PACS")
    lp = esub.add_parser("list", help="exams, most recently changed first")
    lp.add_argument("--state", type=ExamState, choices=EXAM_STATES)
    lp.add_argument("--since", metavar="T", help="changed at or after T (local time)")
    lp.add_argument("--limit", type=int, default=100)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func="reports:cmd_list")
    sp = esub.add_parser("show", help="one exam: record, state, versions, tasks")
    sp.add_argument("accession", metavar="ACC")
    sp.add_argument("--hospital", metavar="ID", help="hospitalId, when several share ACC")
    sp.add_argument("--reveal", action="store_true", help="show personal data unmasked")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func="reports:cmd_show")

    # shim.py
    qsub = _actions(sub, "qr", help="QR code film links (spec 4.3)")
    d = qsub.add_parser("decode", help="decrypt a film-link token (or the whole URL)")
    d.add_argument("token")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func="shim:cmd_qr_decode")
    u = qsub.add_parser("url", help="the film link the PACS gets for an exam")
    u.add_argument("--accession", required=True)
    u.add_argument("--modality", required=True)
    u.add_argument("--hospital", help="default: gateway.hospital_id")
    u.set_defaults(func="shim:cmd_qr_url")

    lsub = _actions(sub, "login", help="doctor login sync (spec 4.4.3.1)")
    lp = lsub.add_parser("parse", help="decode a login string (hrball URL, WYHT:// URL or "
                                       "plugin command line)")
    lp.add_argument("string")
    lp.add_argument("--reveal", action="store_true", help="show personal data unmasked")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func="shim:cmd_login_parse")
    ls = lsub.add_parser("sessions", help="doctor sessions, newest first")
    ls.add_argument("--state", type=SessionState, choices=tuple(SessionState))
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func="shim:cmd_login_sessions")

    p = sub.add_parser("deletions", help="image deletions received from the PACS (spec 4.5)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="shim:cmd_deletions")

    # images.py
    p = sub.add_parser("echo", help="C-ECHO the PACS now and print the round trip")
    p.set_defaults(func="images:cmd_echo")

    p = sub.add_parser("pull", help="retrieve a study from the PACS now (C-FIND + C-MOVE)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study-uid", metavar="UID")
    which.add_argument("--accession", metavar="ACC")
    p.set_defaults(func="images:cmd_pull")

    ssub = _actions(sub, "study", help="inspect studies in the spool")
    sp = ssub.add_parser("show", help="a study's state and its instances")
    sp.add_argument("uid")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func="images:cmd_study_show")

    # upstream.py
    p = sub.add_parser("push", help="deliver queued images and reports to the cloud now")
    p.add_argument("--once", action="store_true",
                   help="drain what is due now (backed-off work included), then exit")
    p.add_argument("--study", metavar="UID", help="only this study's upload")
    p.add_argument("--retry-rejected", action="store_true",
                   help="send instances the cloud rejected again (after it was fixed)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="stop after this many seconds (default 3600)")
    p.set_defaults(func="upstream:cmd_push")

    p = sub.add_parser("upload-state", help="per-instance upload state of a study")
    p.add_argument("study_uid", nargs="?", metavar="UID")
    p.add_argument("--rejected", action="store_true",
                   help="every instance the cloud rejected, all studies")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="upstream:cmd_upload_state")


def _actions(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command whose actions are sub-commands (`tasks list`, `qr url`, ...)."""
    p = sub.add_parser(name, help=help)
    actions = p.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True
    return actions
