"""structlog set-up: JSON lines off a TTY (journald), a console renderer on one,
and a processor that masks personal data in every event."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from .privacy import mask_mapping

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def mask_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict:
    return mask_mapping(event_dict)


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
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if LEVELS[level] < logging.WARNING else LEVELS[level])
    for noisy in ("pynetdicom", "apscheduler", "urllib3", "waitress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a line per queued request
