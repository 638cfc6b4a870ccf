"""What a task handler raises to tell the worker how a failure should be treated."""


class RetryLater(Exception):
    """A transient failure (peer down, timeout): retry with backoff.

    `after` overrides the backoff (e.g. a server's Retry-After)."""

    def __init__(self, message: str, after: float | None = None):
        super().__init__(message)
        self.after = after


class WaitFor(RetryLater):
    """The task cannot run until something outside it recovers (`cause`: the PACS is
    unreachable, the disk is full, our SCP process restarted). Such a wait never uses up
    the task's attempts: the task is retried after `after` seconds (else the backoff), or
    sooner when the thing it waits for announces itself (`pacs.up` wakes retrieves)."""

    def __init__(self, message: str, cause: str, after: float | None = None):
        super().__init__(message, after)
        self.cause = cause


class Fatal(Exception):
    """Retrying cannot help (bad data, refused for good): the task goes dead now.

    The message must say what the administrator has to fix."""
