"""dicomgate demo: the whole flow on one machine (sandbox hospital and cloud)."""

from __future__ import annotations

import argparse
import signal


def cmd_demo(args: argparse.Namespace) -> int:
    from ..sandbox.demo import run_demo

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return run_demo(args.dir, args.exit_when_done, args.timeout)
