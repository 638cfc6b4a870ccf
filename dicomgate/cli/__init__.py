"""The `dicomgate` command. Exit codes: 0 success, 1 the operation failed, 2 usage/config,
3 `migrate` refused: a daemon holds the state dir, 4 the state store's schema is older
(run `dicomgate migrate`) or newer (written by a newer dicomgate) than this version's,
5 no state store yet (nothing has run on this state dir)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..buildinfo import one_line
from ..config import ConfigError
from .context import EXIT_FAILED, EXIT_USAGE, CommandError, closing_stores

# Modules that add sub-commands: each has `add_commands(subparsers)`.
COMMAND_MODULES = (
    "dicomgate.cli.core",
    "dicomgate.cli.migrate",
    "dicomgate.cli.version",
    "dicomgate.cli.tasks",
    "dicomgate.cli.demo",
    "dicomgate.cli.reports",
    "dicomgate.cli.shim",
    "dicomgate.cli.images",
    "dicomgate.cli.upstream",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2 with one clear line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dicomgate", description="Hospital-side gateway of the imaging cloud.")
    p.add_argument("--config", metavar="PATH",
                   help="configuration file (default: $DICOMGATE_CONFIG, else "
                        "/etc/dicomgate/dicomgate.toml)")
    p.add_argument("--version", action="version", version=one_line())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with closing_stores():
            return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration {exc.path} has {len(exc.lines)} problem(s):", file=sys.stderr)
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"dicomgate: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `dicomgate status | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for the user; DICOMGATE_DEBUG=1 shows it
        if os.environ.get("DICOMGATE_DEBUG"):
            raise
        print(f"dicomgate: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
