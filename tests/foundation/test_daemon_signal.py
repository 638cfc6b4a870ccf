"""SIGTERM while the daemon's main thread holds a lock the handler would need: the stop
still happens. (The handler runs in the main thread between two bytecodes; one that calls
`stop.set()` or logs can wait forever on a lock its own thread holds, e.g. the stop
event's own while the watch loop is inside `Event.wait`.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
