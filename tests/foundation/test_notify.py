"""sd_notify never blocks the daemon: systemd (or a test) reading its socket late must not
stop the main thread, which beats the watchdog and must see SIGTERM."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from dicomgate import notify


def qlen() -> int:
    return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())


def test_a_full_notify_queue_drops_the_message_instead_of_blocking(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(path))  # never read: the queue fills after max_dgram_qlen messages
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setattr(notify, "SEND_TIMEOUT", 0.2, raising=False)
    sent: list[bool] = []
    beats = qlen() + 3
    worker = threading.Thread(target=lambda: sent.extend(
        notify.notify("WATCHDOG=1") for _ in range(beats)), daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(timeout=30)
    try:
        assert not worker.is_alive(), "notify() blocked on a full queue"
        queued = sent.count(True)  # the kernel takes max_dgram_qlen (+1), then refuses
        assert queued >= qlen() and sent == [True] * queued + [False] * (beats - queued)
        assert beats - queued >= 2  # dropped, each after SEND_TIMEOUT
        assert time.monotonic() - t0 < 10
        first = reader.recv(64)
        assert first == b"WATCHDOG=1"
    finally:
        reader.close()


def test_not_run_by_systemd_sends_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False
