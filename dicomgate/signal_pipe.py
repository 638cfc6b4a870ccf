"""SIGTERM and SIGINT handed to the main thread without taking a lock in the handler.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
same thread holds a lock: an Event's own (inside `Event.wait`) or the log's write lock (inside
any log call). A handler that logs or sets an Event then waits forever for a lock its own
thread holds, and the process hangs on SIGTERM. So the handler only notes the signal and
writes a byte to a pipe; the main thread waits on that pipe and does the rest.
"""

from __future__ import annotations

import os
import select
import signal


class SignalPipe:
    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._signals: list[int] = []

    def install(self) -> SignalPipe:
        """Take over SIGTERM and SIGINT (from the main thread only, as Python requires)."""
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)  # list.append takes no lock the thread could hold
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of earlier signals: it is readable anyway

    def wait(self, timeout: float | None, *fds: int) -> tuple[list[str], list[int]]:
        """Block up to `timeout` s (None: no limit) until a signal arrives or one of `fds`
        is readable: (the names of the signals received since the last call, the readable
        ones of `fds`)."""
        readable, _, _ = select.select([self.fd, *fds], [], [], timeout)
        names: list[str] = []
        if self.fd in readable:
            os.read(self.fd, 64)
            # swapped in one step: a signal arriving meanwhile lands in `got` or the new list
            got, self._signals = self._signals, []
            names = [signal.Signals(s).name for s in got]
        return names, [fd for fd in readable if fd != self.fd]
