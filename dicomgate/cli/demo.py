"""dicomgate demo: the whole flow on one machine (sandbox hospital and cloud)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the daemon between a sandbox hospital and cloud")
    p.add_argument("--dir", type=Path, help="working directory to keep (default: a temp dir, "
                                            "removed at the end)")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop once every exam is delivered (exit 1 if one is not)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for delivery (default 300)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..sandbox.demo import run_demo

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return run_demo(args.dir, args.exit_when_done, args.timeout)
