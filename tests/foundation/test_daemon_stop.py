"""SIGTERM stops the daemon whatever its main thread is doing: sending a watchdog beat that
systemd does not read at once, or holding a lock the signal handler would need."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap

from tests.support import start_daemon, wait_until


def test_sigterm_stops_the_daemon_while_nobody_reads_its_watchdog_beats(minimal_config,
                                                                        tmp_path):
    """A datagram socket's queue is short (net.unix.max_dgram_qlen): a beat sent while it is
    full used to block the main loop for good, SIGTERM included (seen under load, when the
    reader fell behind)."""
    path = tmp_path / "notify.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(path))
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.connect(str(path))
    filler.setblocking(False)
    for _ in range(10_000):  # fill the queue the daemon's beats go to; nobody reads it
        try:
            filler.send(b"X=1")
        except BlockingIOError:
            break
    log = tmp_path / "daemon.log"
    proc = start_daemon(minimal_config, log, env={"NOTIFY_SOCKET": str(path),
                                                  "WATCHDOG_USEC": "400000"})
    try:
        wait_until(lambda: "daemon.started" in log.read_text(), timeout=40)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
        events = [json.loads(line)["event"] for line in log.read_text().splitlines()
                  if line.startswith("{")]
        assert events[-3:] == ["daemon.signal", "daemon.stopping", "daemon.stopped"], events
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.close()
        filler.close()


HELD_LOCK = textwrap.dedent('''
    import os, signal, threading
    from dicomgate import daemon, logs

    logs.configure(fmt="json")
    stop = threading.Event()
    wait = daemon._install_signals(stop)
    with stop._cond:  # what Event.wait holds for a moment at every watchdog beat
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))  # the handler runs here, on this thread
    print(json.dumps({"event": "handler returned"}), flush=True)
    print(json.dumps({"event": "stopping" if wait(5) else "still running"}), flush=True)
''').replace("import os,", "import json, os,")


def test_sigterm_while_the_main_thread_holds_the_stop_lock_still_stops():
    try:
        out = subprocess.run([sys.executable, "-c", HELD_LOCK], capture_output=True,
                             text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the signal handler deadlocked on a lock its own thread "
                             f"holds; output: {exc.stdout!r}") from None
    assert out.returncode == 0, out.stderr
    events = [json.loads(line)["event"] for line in out.stdout.splitlines()]
    assert events == ["handler returned", "daemon.signal", "stopping"], out.stdout
