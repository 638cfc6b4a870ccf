"""What a task handler raises to tell the worker how a failure should be treated."""


class RetryLater(Exception):
    """A transient failure (peer down, timeout): retry with backoff.

    `after` overrides the backoff (e.g. a server's Retry-After)."""

    def __init__(self, message: str, after: float | None = None):
        super().__init__(message)
        self.after = after


class Fatal(Exception):
    """Retrying cannot help (bad data, refused for good): the task goes dead now.

    The message must say what the administrator has to fix."""
