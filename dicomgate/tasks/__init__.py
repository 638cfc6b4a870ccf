"""The durable task queue's workers; the SQL lives in dicomgate.state.tasks."""

from .errors import Fatal, RetryLater
from .registry import Handler, Registry
from .workers import WorkerPool

__all__ = ["Fatal", "Handler", "Registry", "RetryLater", "WorkerPool"]
