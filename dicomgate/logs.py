"""structlog set-up: JSON lines off a TTY (journald), a console renderer on one,
and a processor that masks personal data in every event.

Everything the process writes is one JSON object per line (`journalctl -o cat | jq`):
third-party loggers (pynetdicom, APScheduler, waitress, urllib3) get a stable event name
(`lib.<library>`, their sentence in `message`), and exceptions that escape a thread, the
main program or a destructor become one event each (`thread.crashed`, `process.crashed`,
`exception.unraisable`) with the traceback in a field, never as raw lines.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from typing import Any, TextIO

import structlog

from .privacy import mask_mapping

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
THIRD_PARTY = ("pynetdicom", "apscheduler", "urllib3", "waitress", "requests", "py.warnings")

log = structlog.get_logger("dicomgate.logs")


def mask_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict:
    return mask_mapping(event_dict)


def name_foreign_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict:
    """A stdlib record's message is a sentence: keep it as `message`, name the event
    after its library so filters on `.event` stay stable across library versions."""
    record = event_dict.get("_record")
    if record is None:
        return event_dict
    name = record.name or "root"
    library = "warnings" if name == "py.warnings" else name.split(".")[0]
    event_dict["message"] = event_dict.pop("event", "")
    event_dict["event"] = f"lib.{library}"
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    json_out = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_personal_data,
    ]
    renderer = (structlog.processors.JSONRenderer(ensure_ascii=False) if json_out
                else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # One write per line: the daemon and its SCP child share stdout (journald), and
        # print() would write the newline separately, letting lines interleave.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries (pynetdicom, apscheduler, urllib3) log through stdlib logging:
    # render their warnings the same way so one JSON stream reaches journald.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[name_foreign_event, structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if LEVELS[level] < logging.WARNING else LEVELS[level])
    for noisy in THIRD_PARTY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a line per queued request
    logging.captureWarnings(True)
    install_exception_hooks()


def install_exception_hooks() -> None:
    """Exceptions nobody caught become one JSON event, not a multi-line traceback."""
    threading.excepthook = _thread_crashed
    sys.excepthook = _process_crashed
    sys.unraisablehook = _unraisable


def _trace(exc_type: type[BaseException] | None, exc: BaseException | None,
           tb: Any) -> str:
    if exc_type is None:
        return ""
    return "".join(traceback.format_exception(exc_type, exc, tb)).strip()


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    log.error("thread.crashed", thread=getattr(args.thread, "name", None),
              error=f"{args.exc_type.__name__}: {args.exc_value}",
              traceback=_trace(args.exc_type, args.exc_value, args.exc_traceback))


def _process_crashed(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.critical("process.crashed", error=f"{exc_type.__name__}: {exc}",
                 traceback=_trace(exc_type, exc, tb))


def _unraisable(args: Any) -> None:
    log.warning("exception.unraisable", error=f"{args.exc_type.__name__}: {args.exc_value}",
                message=args.err_msg, object=repr(args.object)[:200],
                traceback=_trace(args.exc_type, args.exc_value, args.exc_traceback))
