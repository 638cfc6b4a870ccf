"""signal_pipe.py: signals reach the main thread through a pipe, never through a lock the
handler would take; the Portal AET's process waits on its stdin and that pipe at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent('''
    import json, os, signal, threading
    from dicomgate.signal_pipe import SignalPipe

    pipe = SignalPipe().install()
    lock = threading.Lock()
    with lock:  # the handler runs on this thread while it holds a lock: it must not wait
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))
    names, ready = pipe.wait(5, 0)
    print(json.dumps({"names": names, "stdin": ready}), flush=True)
    names, ready = pipe.wait(0.2, 0)  # nothing new: the signals were handed over once
    print(json.dumps({"names": names, "stdin": ready}), flush=True)
    names, ready = pipe.wait(5, 0)  # the parent closes our stdin now
    print(json.dumps({"names": names, "stdin": ready, "eof": os.read(0, 10) == b""}),
          flush=True)
''')


def test_signals_under_a_held_lock_then_stdin_closing_are_each_seen_once():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        proc.stdin.close()
        third = json.loads(proc.stdout.readline())
        assert proc.wait(10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first == {"names": ["SIGTERM", "SIGINT"], "stdin": []}
    assert second == {"names": [], "stdin": []}
    assert third == {"names": [], "stdin": [0], "eof": True}
