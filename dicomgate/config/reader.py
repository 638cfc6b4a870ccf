"""A TOML table reader that collects every problem with its key path.

Section parsers pull typed values out of a `Table`; a bad value records an
error and yields a placeholder so parsing carries on and the administrator
sees all problems at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import values
from .model import Secret

MISSING: Any = object()


class Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, key: str, problem: str, expected: str) -> None:
        self.lines.append(f"{key}: {problem} ({expected})")


class Table:
    def __init__(self, problems: Problems, path: str, raw: dict[str, Any], base_dir: Path):
        self.problems = problems
        self.path = path
        self.raw = raw
        self.base_dir = base_dir
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        if name in self.raw:
            return self.raw[name]
        if default is MISSING:
            self.problems.add(self.key(name), "missing", "this key is required")
        return default

    def value(self, name: str, parse: Callable[[Any], Any], default: Any = MISSING) -> Any:
        raw = self._get(name, default)
        if raw is default:
            return default
        try:
            return parse(raw)
        except values.BadValue as exc:
            self.problems.add(self.key(name), exc.problem, exc.expected)
            return None

    def str(self, name: str, default: Any = MISSING, choices: tuple[str, ...] = ()) -> Any:
        def parse(raw: Any) -> str:
            if not isinstance(raw, str):
                raise values.BadValue(f"{type(raw).__name__} {raw!r}", "a string")
            if choices and raw not in choices:
                raise values.BadValue(f"{raw!r}", "one of " + ", ".join(f'"{c}"' for c in choices))
            if not choices and not raw.strip():
                raise values.BadValue("empty string", "a non-empty string")
            return raw

        return self.value(name, parse, default)

    def int(self, name: str, default: Any = MISSING, lo: int = 0, hi: int = 2**31) -> Any:
        def parse(raw: Any) -> int:
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise values.BadValue(f"{type(raw).__name__} {raw!r}", f"an integer {lo}-{hi}")
            if not lo <= raw <= hi:
                raise values.BadValue(f"{raw} is out of range", f"an integer {lo}-{hi}")
            return raw

        return self.value(name, parse, default)

    def bool(self, name: str, default: Any = MISSING) -> Any:
        def parse(raw: Any) -> bool:
            if not isinstance(raw, bool):
                raise values.BadValue(f"{type(raw).__name__} {raw!r}", "true or false")
            return raw

        return self.value(name, parse, default)

    def path_value(self, name: str, default: Any = MISSING, must_exist: bool = False) -> Any:
        def parse(raw: Any) -> Path:
            if not isinstance(raw, str) or not raw.strip():
                raise values.BadValue(f"{raw!r}", "a file system path")
            p = Path(raw)
            p = p if p.is_absolute() else self.base_dir / p
            if must_exist and not os.access(p, os.R_OK):
                raise values.BadValue(f"{p} does not exist or is not readable", "a readable file")
            return p

        return self.value(name, parse, default)

    def list_of(self, name: str, parse: Callable[[Any], Any], default: Any = MISSING) -> Any:
        raw = self._get(name, default)
        if raw is default:
            return default
        if not isinstance(raw, list):
            self.problems.add(self.key(name), f"{type(raw).__name__} {raw!r}", "a list")
            return ()
        out = []
        for i, item in enumerate(raw):
            try:
                out.append(parse(item))
            except values.BadValue as exc:
                self.problems.add(f"{self.key(name)}[{i}]", exc.problem, exc.expected)
        return tuple(out)

    def secret(self, name: str, required: bool = True) -> Secret | None:
        """A secret from `name`, `name_file` (a path) or `name_env` (a variable name)."""
        sources = [s for s in (name, f"{name}_file", f"{name}_env") if s in self.raw]
        for s in (name, f"{name}_file", f"{name}_env"):
            self._seen.add(s)
        expected = f"exactly one of {name}, {name}_file, {name}_env"
        if len(sources) > 1:
            self.problems.add(self.key(name), "given more than once", expected)
            return None
        if not sources:
            if required:
                self.problems.add(self.key(name), "missing", expected)
            return None
        src = sources[0]
        raw = self.raw[src]
        if not isinstance(raw, str) or not raw.strip():
            self.problems.add(self.key(src), "empty or not a string", "a non-empty string")
            return None
        if src == name:
            return Secret(raw.strip(), "config")
        if src.endswith("_env"):
            if raw not in os.environ:
                self.problems.add(self.key(src), f"environment variable {raw} is not set",
                                  "the variable set in the service's environment")
                return None
            return Secret(os.environ[raw].strip(), f"env:{raw}")
        p = Path(raw) if Path(raw).is_absolute() else self.base_dir / raw
        try:
            return Secret(p.read_text(encoding="utf-8").strip(), f"file:{p}")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problems.add(self.key(src), f"cannot read {p}: {reason}",
                              "a file readable by the service user")
            return None

    def table(self, name: str) -> Table | None:
        self._seen.add(name)
        raw = self.raw.get(name)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problems.add(self.key(name), f"{type(raw).__name__}", "a table [section]")
            return None
        return Table(self.problems, self.key(name), raw, self.base_dir)

    def finish(self) -> None:
        """Report keys that no parser asked for: usually a typo."""
        for name in self.raw:
            if name not in self._seen:
                self.problems.add(self.key(name), "unknown key", "remove it or check its spelling")
