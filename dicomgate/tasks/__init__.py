"""The durable task queue's workers; the SQL lives in dicomgate.state.tasks."""

from .errors import Fatal, RetryLater, WaitFor
from .registry import GENERAL, Handler, Registry
from .workers import WorkerPool

__all__ = ["GENERAL", "Fatal", "Handler", "Registry", "RetryLater", "WaitFor", "WorkerPool"]
