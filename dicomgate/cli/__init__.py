"""The `dicomgate` command. Exit codes: 0 success, 1 the operation failed, 2 usage/config,
3 `migrate` refused: a daemon holds the state dir, 4 the state store's schema is older
(run `dicomgate migrate`) or newer (written by a newer dicomgate) than this version's,
5 no state store yet (nothing has run on this state dir)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ..config import ConfigError
from .context import EXIT_FAILED, EXIT_USAGE, CommandError, closing_stores
from .parser import build_parser


def command(ref: str) -> Callable[..., int | None]:
    """"module:function" of this package (cli/parser.py): imported now, as it runs."""
    module, function = ref.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with closing_stores():
            return int(command(args.func)(args) or 0)
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
