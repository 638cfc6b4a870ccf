"""Reports: exams and reports from the hospital RIS/PACS (spec 4.1), view or HTTP API.

The public surface the CLI uses; the rest of the package is the feature's own business.
"""

from .events import BY_CODE
from .feature import make_poller
from .poller import TypeResult
from .record import parse_time

__all__ = ["BY_CODE", "TypeResult", "make_poller", "parse_time"]
