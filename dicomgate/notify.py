"""systemd's sd_notify protocol over $NOTIFY_SOCKET (no libsystemd needed)."""

from __future__ import annotations

import os
import socket

# A datagram socket whose reader lags (its queue holds only net.unix.max_dgram_qlen
# messages, 10 by default) blocks the sender: the daemon's main thread beats the watchdog,
# and blocked there it never saw its own SIGTERM. A message not sent in this time is dropped.
SEND_TIMEOUT = 1.0


def notify(message: str) -> bool:
    """Send e.g. "READY=1"; False when not run by systemd (no socket), when the manager's
    queue stays full for SEND_TIMEOUT, or on error. Never blocks longer than that."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(SEND_TIMEOUT)
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_period(default: float = 10.0) -> float:
    """Half of systemd's WatchdogSec (WATCHDOG_USEC), so one missed beat is not fatal."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if usec.isdigit() and (not pid or pid == str(os.getpid())):
        return max(0.5, int(usec) / 2e6)
    return default
