"""pynetdicom's polling, for an accepted association, turned into waits (see
pynetdicom_tuning.py, which applies it where the installed pynetdicom has what it needs).

pynetdicom's DUL thread sleeps `_run_loop_delay` whenever it found nothing to do, and its
association thread checks its DIMSE message queue every 1 ms. Here the DUL sleep, which
pynetdicom.dul passes to `time.sleep`, is a float that waits on the socket and a wake-up
pair instead, and the message queue's non-blocking read waits on its condition; each
producer (a primitive to send, a message or release/abort primitive received, a kill)
wakes the waiting thread. A missed wake-up only costs IDLE_WAIT, never correctness: the
loops around these waits are pynetdicom's own.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from pynetdicom import dul

# Longest wait of an accepted association's threads with nothing to do: what they still
# poll for (pynetdicom's timers, a kill from another thread) is noticed this late at most.
IDLE_WAIT = 0.05


class _DulIdle(float):
    """An accepted association's DUL idle sleep, as pynetdicom's loop passes it to
    `time.sleep`: in the DUL thread itself, a wait until the socket has data or something
    is queued to send (poke), at most IDLE_WAIT; anywhere else (pynetdicom's stop_dul
    waiting for the thread to end), a poke and a plain sleep of its float value."""

    def __new__(cls, seconds: float, provider: Any) -> _DulIdle:
        return super().__new__(cls, seconds)

    def __init__(self, seconds: float, provider: Any) -> None:
        self.provider = weakref.ref(provider)
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)

    def poke(self) -> None:
        try:
            self._tx.send(b"\0")
        except OSError:  # full (a poke is already waiting) or closed (the thread ended)
            pass

    def wait(self) -> None:
        provider = self.provider()
        if provider is not threading.current_thread():
            self.poke()
            time.sleep(float(self))
            return
        sock = getattr(provider.socket, "socket", None)
        try:
            select.select([self._rx] if sock is None else [sock, self._rx], [], [], IDLE_WAIT)
            while self._rx.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except (OSError, ValueError):  # the socket closed under us: the loop sees it
            time.sleep(float(self))
        if provider._kill_thread:  # the loop ends now: nothing waits on this any more
            self._rx.close()
            self._tx.close()


class _DulClock:
    """`time` as pynetdicom.dul sees it: everything the module, but a _DulIdle sleep
    waits (see there)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if isinstance(seconds, _DulIdle):
            seconds.wait()
        else:
            time.sleep(seconds)


class _PokingQueue(queue.Queue):
    """A queue whose put also pokes a waiting thread (`on_put`)."""

    def __init__(self, on_put: Callable[[], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._on_put()


class _WaitingQueue(queue.Queue):
    """The association's DIMSE message queue: its reactor's non-blocking read waits up to
    IDLE_WAIT for a message, or for `wake` (a release or abort primitive arrived)."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            with self.not_empty:
                if not self._qsize():
                    self.not_empty.wait(IDLE_WAIT)
        return super().get(block, timeout)

    def wake(self) -> None:
        with self.not_empty:
            self.not_empty.notify_all()


def wait_instead_of_polling(assoc: Any, idle_sleep: float) -> None:
    """Before an accepted association's threads start: pynetdicom's DUL thread sleeps
    0.2-1 ms whenever it finds nothing to do, and its association thread checks for a
    DIMSE message every 1 ms. Both polled on ~45 % of the Portal AET's CPU samples while
    it received one large study (bench/receive.py --profile), and every C-STORE waited for
    a poll twice (its request, its response). Here each waits for its work instead: the
    DUL for socket data or a primitive to send, the association for a message or a
    release/abort primitive from the DUL."""
    d = assoc.dul
    if d.is_alive() or d.to_provider_queue.qsize() or d.to_user_queue.qsize() \
            or assoc.dimse.msg_queue.qsize():  # too late to swap the queues
        d._run_loop_delay = idle_sleep
        return
    idle = _DulIdle(idle_sleep, d)
    d._run_loop_delay = idle
    d.to_provider_queue = _PokingQueue(idle.poke)
    messages = _WaitingQueue()
    assoc.dimse.msg_queue = messages
    d.to_user_queue = _PokingQueue(messages.wake)
    kill = d.kill_dul

    def kill_dul() -> None:
        kill()
        idle.poke()
    d.kill_dul = kill_dul
    dul.time = _DULCLOCK  # type: ignore[assignment]


_DULCLOCK = _DulClock()
