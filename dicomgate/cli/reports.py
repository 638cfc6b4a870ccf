"""sync --once, exams list, exams show: the report poller by hand and what it stored."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from .. import logs
from ..app import App
from ..privacy import mask_mapping, mask_text
from ..reports import (
    BY_CODE,
    SourceError,
    TypeResult,
    make_poller,
    parse_time,
    reconcile,
    run_check,
)
from ..state.exams import Exam
from ..state.names import ExamState
from .context import EXIT_FAILED, EXIT_USAGE, CommandError, open_app, print_json, print_table, when


# -- sync ---------------------------------------------------------------------------------
def cmd_sync(args: argparse.Namespace) -> int:
    if args.until and not args.since:
        raise CommandError("--until needs --since", EXIT_USAGE)
    if args.accession and args.since:
        raise CommandError("--accession reads one exam with no time limit: drop --since",
                           EXIT_USAGE)
    for code in args.type or ():
        if code not in BY_CODE:
            raise CommandError(f"--type {code}: expected one of " + ", ".join(
                f"{e.code} ({e.name})" for e in BY_CODE.values()), EXIT_USAGE)
    app = open_app(args)
    if app.config.reports is None:
        raise CommandError(f"report polling is off: {app.config.path} has no [reports] "
                           "section", EXIT_USAGE)
    # log lines (quarantined rows, failures) go to stderr; stdout carries the result
    logs.configure(app.config.log.level, app.config.log.format, stream=sys.stderr)
    if args.check:
        return _check(app, args.json)
    since = _time_arg(app, "--since", args.since)
    until = _time_arg(app, "--until", args.until)
    if since and until and since >= until:
        raise CommandError("--since must be before --until", EXIT_USAGE)
    poller = make_poller(app)
    try:
        if args.accession:
            results = [poller.sync_accession(args.accession, args.type)]
        else:
            results = poller.sync(args.type, since, until)
            if since is None:  # the daemon's own windows: status shows what failed
                poller.record_errors(results)
    finally:
        poller.close()
    _print_results(results, args.json)
    return EXIT_FAILED if any(r.error for r in results) else 0


def _check(app: App, as_json: bool) -> int:
    if app.config.reports is None or app.config.reports.source != "view":
        raise CommandError("sync --check checks a database view: reports.source is not "
                           '"view"', EXIT_USAGE)
    try:
        result = run_check(app)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        print_json(result.public())
    else:
        name = app.config.reports.view.name if app.config.reports.view else "?"
        print(f"view {name}: {'OK' if result.ok else 'PROBLEMS'} "
              f"({result.rows_sampled} newest rows checked)")
        print_table([{"field": f, **c} for f, c in result.time_columns.items()],
                    ["field", "column", "format", "configured", "newest", "sample"])
        for expression, value in result.clock.items():
            print(f"database clock: {expression} = {value} (gateway: {result.at})")
        for line in [*result.problems, *result.row_problems]:
            print(f"PROBLEM: {line}")
        for line in result.warnings:
            print(f"warning: {line}")
    return 0 if result.ok else EXIT_FAILED


def cmd_reconcile(args: argparse.Namespace) -> int:
    app = open_app(args)
    if app.config.reports is None:
        raise CommandError(f"report polling is off: {app.config.path} has no [reports] "
                           "section", EXIT_USAGE)
    logs.configure(app.config.log.level, app.config.log.format, stream=sys.stderr)
    since = _time_arg(app, "--since", args.since)
    until = _time_arg(app, "--until", args.until)
    poller = make_poller(app)
    if since is None:
        today = poller.now().replace(hour=0, minute=0, second=0)
        since, until = today - dt.timedelta(days=1), until or today
    until = until or since + dt.timedelta(days=1)
    if since >= until:
        raise CommandError("--since must be before --until", EXIT_USAGE)
    try:
        result = reconcile.reconcile(poller, since, until, repair=not args.report_only)
    finally:
        poller.close()
    app.store.facts.set(reconcile.FACT, result.public())
    if args.json:
        print_json(result.public())
    else:
        print(reconcile.summary(result))
        print_table([{**m.__dict__, "repaired": m.accession_no in result.repaired}
                     for m in result.missed],
                    ["type", "hospital_id", "accession_no", "view_time", "held",
                     "repaired"])
    missed_left = args.report_only and result.missed
    return EXIT_FAILED if result.errors or missed_left else 0


def _time_arg(app: App, flag: str, value: str | None) -> dt.datetime | None:
    if not value:
        return None
    tz = app.config.gateway.timezone
    parsed = parse_time(value, tz)
    if parsed is None:
        raise CommandError(f"{flag} {value!r}: expected a time such as '2024-05-01 08:00:00' "
                           f"({tz.key} unless an offset is given)", EXIT_USAGE)
    return parsed.astimezone(tz).replace(tzinfo=None)


def _print_results(results: list[TypeResult], as_json: bool) -> None:
    if as_json:
        print_json([r.public() for r in results])
        return
    rows = []
    for r in results:
        d = r.public()
        d["type"] = f"{r.type} {BY_CODE[r.type].name}" if r.type else "accession"
        d["window"] = f"{d['start']} .. {d['end']}" if r.start else "-"
        d["error"] = r.error
        rows.append(d)
    print_table(rows, ["type", "window", "read", "new", "changed", "unchanged", "quarantined",
                       "duplicates", "stale", "tasks", "cancelled", "error"])
    if any(r.counts.quarantined for r in results):
        print("quarantined rows: dicomgate exams list --state quarantined")


# -- exams --------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    app = open_app(args)
    since = _time_arg(app, "--since", args.since)
    since_ts = since.replace(tzinfo=app.config.gateway.timezone).timestamp() if since else None
    exams = app.store.exams.list(state=args.state, since=since_ts, limit=args.limit)
    rows = [_summary(e) for e in exams]
    if args.state in (None, ExamState.QUARANTINED):
        rows += [_reject_summary(r) for r in app.store.exams.rejects(since_ts, args.limit)]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        r["updated"] = when(r["updated"])
    print_table(rows, ["id", "hospital_id", "accession_no", "state", "modality", "exam_time",
                       "report_version", "updated", "reason"])
    return 0


def _summary(e: Exam) -> dict[str, Any]:
    return {"id": e.id, "hospital_id": e.hospital_id, "accession_no": e.accession_no,
            "state": e.state, "modality": e.record.get("modality"), "exam_time": e.exam_time,
            "study_uid": e.study_uid, "report_version": e.report_version,
            "updated": e.updated_at, "reason": e.quarantine_reason}


def _reject_summary(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"R{r['id']}", "hospital_id": r["hospital_id"], "accession_no": None,
            "state": "quarantined", "modality": r["record"].get("modality"),
            "exam_time": r["record"].get("examTime"), "study_uid": None, "report_version": 0,
            "updated": r["last_seen"], "reason": mask_text(r["reason"])}


def cmd_show(args: argparse.Namespace) -> int:
    app = open_app(args)
    exams = app.store.exams.by_accession(args.accession)
    if args.hospital:
        exams = [e for e in exams if e.hospital_id == args.hospital]
    if not exams:
        raise CommandError(f"no exam with accession number {args.accession!r} (list them: "
                           "dicomgate exams list; read it from the PACS: dicomgate sync --once "
                           f"--accession {args.accession})")
    if len(exams) > 1:
        raise CommandError(f"{len(exams)} hospitals have accession number {args.accession!r}: "
                           f"add --hospital ({', '.join(e.hospital_id for e in exams)})",
                           EXIT_USAGE)
    data = _detail(app, exams[0], args.reveal)
    if args.json:
        print_json(data)
    else:
        _print_detail(data)
    return 0


def _detail(app: App, exam: Exam, reveal: bool) -> dict[str, Any]:
    def shown(record: dict[str, Any]) -> dict[str, Any]:
        return record if reveal else mask_mapping(record)

    tasks = {t.id: t for t in app.store.tasks.list(exam_id=exam.id)}
    if exam.study_uid:
        tasks.update({t.id: t for t in app.store.tasks.list(study_uid=exam.study_uid)})
    return {
        **_summary(exam), "created": exam.created_at, "warnings": exam.warnings,
        "record": shown(exam.record),
        "versions": [{**v, "record": shown(v["record"])}
                     for v in app.store.exams.versions(exam.id)],
        "tasks": [tasks[i].public() for i in sorted(tasks)],
    }


def _print_detail(d: dict[str, Any]) -> None:
    facts = [("exam", d["id"]), ("hospital", d["hospital_id"]), ("accession", d["accession_no"]),
             ("state", d["state"]), ("study", d["study_uid"]),
             ("report version", d["report_version"]), ("quarantine", d["reason"]),
             ("warnings", "; ".join(d["warnings"]) or None), ("first read", when(d["created"])),
             ("changed", when(d["updated"]))]
    for label, value in facts:
        print(f"{label:<15} {'-' if value is None else value}")
    print("\nrecord:")
    for key in sorted(d["record"]):
        value = d["record"][key]
        print(f"  {key:<17} {'-' if value is None else value}")
    print("\nversions:")
    print_table([{"version": v["version"], "type": v["source_type"],
                  "created": when(v["created_at"]), "hash": v["content_hash"][:12]}
                 for v in d["versions"]], ["version", "type", "created", "hash"])
    print("\ntasks:")
    print_table([{"id": t["id"], "kind": t["kind"], "key": t["key"], "state": t["state"],
                  "updated": when(t["updated_at"]), "error": t["last_error"]}
                 for t in d["tasks"]], ["id", "kind", "key", "state", "updated", "error"])
