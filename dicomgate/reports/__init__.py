"""Reports: exams and reports from the hospital RIS/PACS (spec 4.1), view or HTTP API.

The public surface the CLI uses; the rest of the package is the feature's own business.
"""

from . import reconcile
from .events import BY_CODE
from .feature import make_poller, run_check
from .poller import TypeResult
from .record import parse_time
from .source import SourceError

__all__ = ["BY_CODE", "SourceError", "TypeResult", "make_poller", "parse_time", "reconcile",
           "run_check"]
