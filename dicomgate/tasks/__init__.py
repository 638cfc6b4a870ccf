"""The durable task queue's workers; the SQL lives in dicomgate.state.tasks."""

from .errors import Fatal, RetryLater, WaitFor
from .registry import GENERAL, Handler, Registry
from .workers import Batching, WorkerPool

__all__ = ["GENERAL", "Batching", "Fatal", "Handler", "Registry", "RetryLater", "WaitFor",
           "WorkerPool"]
