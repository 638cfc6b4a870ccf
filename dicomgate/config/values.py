"""Parsers for the value types of the configuration file.

Each parser takes the raw TOML value and returns the typed value, or raises
`BadValue(what is wrong, what is expected)` so the loader can name the key.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit


class BadValue(ValueError):
    def __init__(self, problem: str, expected: str):
        super().__init__(problem)
        self.problem = problem
        self.expected = expected


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_UNITS = {
    "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def duration(raw: object) -> float:
    """"30s", "5m", "2h", "7d", "500ms" -> seconds."""
    expected = 'a duration such as "30s", "5m", "2h" or "7d"'
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    m = _DURATION_RE.match(raw)
    if not m:
        raise BadValue(f"{raw!r} is not a duration", expected)
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def size(raw: object) -> int:
    """"500MB", "5GB" -> bytes (binary multiples: 1 KB = 1024 B)."""
    expected = 'a size such as "500MB" or "5GB"'
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    m = _SIZE_RE.match(raw)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise BadValue(f"{raw!r} is not a size", expected)
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def ae_title(raw: object) -> str:
    expected = "1 to 16 printable ASCII characters, no backslash"
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    value = raw.strip()
    if not value:
        raise BadValue("empty AE title", expected)
    if len(value) > 16:
        raise BadValue(f"{raw!r} is {len(value)} characters long", expected)
    if "\\" in value or any(not (32 <= ord(c) < 127) for c in value):
        raise BadValue(f"{raw!r} contains a backslash or a control/non-ASCII character", expected)
    return value


def uid(raw: object) -> str:
    expected = "a DICOM UID: digits and dots, at most 64 characters, e.g. 1.3.12.2.1107.5.9.1"
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    value = raw.strip()
    parts = value.split(".")
    if not value or len(value) > 64 or not all(p.isdigit() and (p == "0" or p[0] != "0")
                                               for p in parts):
        raise BadValue(f"{raw!r} is not a UID", expected)
    return value


def port(raw: object) -> int:
    expected = "a TCP port number 1-65535"
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    if not 1 <= raw <= 65535:
        raise BadValue(f"{raw} is out of range", expected)
    return raw


def url(raw: object, schemes: tuple[str, ...] = ("http", "https")) -> str:
    expected = f"an absolute URL ({'/'.join(schemes)}://host[:port]/path)"
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname:
        raise BadValue(f"{raw!r} is not a valid URL", expected)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BadValue(f"{raw!r}: {exc}", expected) from None
    return raw.rstrip("/") if parts.path not in ("", "/") else raw


def cidr(raw: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    expected = 'a CIDR such as "10.0.0.0/8" or "127.0.0.1/32"'
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", expected)
    try:
        return ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        raise BadValue(f"{raw!r} is not a CIDR", expected) from None


def host(raw: object) -> str:
    expected = "an IP address or host name"
    if not isinstance(raw, str) or not raw.strip():
        raise BadValue(f"{raw!r}", expected)
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.:\-_\[\]]+", value):
        raise BadValue(f"{raw!r} is not a host", expected)
    return value


def hex_key(raw: str, nbytes: int) -> bytes:
    expected = f"{nbytes * 2} hexadecimal digits"
    value = raw.strip()
    if len(value) != nbytes * 2 or not re.fullmatch(r"[0-9a-fA-F]+", value):
        raise BadValue(f"{len(value)} characters, not a {nbytes}-byte hex key", expected)
    return bytes.fromhex(value)


# A SQL identifier for the report view: letters (any script), digits, _ $ # and spaces;
# one given in double quotes is used verbatim (a case-sensitive PostgreSQL/Oracle name).
# The same rule is applied by check-config and by the view source before any query.
SQL_IDENTIFIER_RE = re.compile(r'^([\w$# ]+|"[^"]+")$')
SQL_IDENTIFIER_EXPECTED = ('a plain SQL identifier: letters, digits, _ $ # (or a "quoted" '
                           "name); schema.view for a view in a schema")


def sql_identifier(raw: object, dotted: bool = False) -> str:
    """A view name (`dotted`: schema.view allowed) or a column name."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadValue(f"{raw!r}", SQL_IDENTIFIER_EXPECTED)
    parts = raw.split(".") if dotted and not raw.startswith('"') else [raw]
    for part in parts:
        if not SQL_IDENTIFIER_RE.match(part):
            raise BadValue(f"{raw!r} is not a plain SQL identifier", SQL_IDENTIFIER_EXPECTED)
    return raw


# How a view keeps a time column: a name, or a Java-style pattern of yyyy MM dd HH mm ss
# in that order (so that the text sorts by time), e.g. "yyyy/MM/dd HH:mm:ss".
TIME_FORMAT_NAMES = ("auto", "datetime", "iso8601", "epoch", "epoch_ms",
                     "number:yyyyMMddHHmmss")
TIME_FORMAT_EXPECTED = ('"auto", "datetime", "iso8601", "epoch", "epoch_ms", '
                        '"number:yyyyMMddHHmmss" or a pattern such as "yyyy/MM/dd HH:mm:ss" '
                        "or \"yyyyMMddHHmmss\" (year first, zero-padded)")
_TIME_TOKENS = ("yyyy", "MM", "dd", "HH", "mm", "ss")
_TIME_SPLIT_RE = re.compile(r"(yyyy|MM|dd|HH|mm|ss)")


def time_format(raw: object) -> str:
    """A time format name, or a pattern with Java quoting removed ('T' -> T)."""
    if not isinstance(raw, str):
        raise BadValue(f"{type(raw).__name__} {raw!r}", TIME_FORMAT_EXPECTED)
    if raw in TIME_FORMAT_NAMES:
        return raw
    pattern = raw.replace("'", "")
    parts = [p for p in _TIME_SPLIT_RE.split(pattern) if p]
    tokens = [p for p in parts if p in _TIME_TOKENS]
    literals = "".join(p for p in parts if p not in _TIME_TOKENS)
    if tokens != list(_TIME_TOKENS[:len(tokens)]) or len(tokens) not in (3, 5, 6):
        raise BadValue(f"{raw!r} does not sort as text (year, month, day, hour, minute, "
                       "second in that order): a time window cannot select by it",
                       TIME_FORMAT_EXPECTED)
    if any(c.isascii() and c.isalnum() and c != "T" for c in literals):
        raise BadValue(f"{raw!r} has letters besides the tokens yyyy MM dd HH mm ss and T",
                       TIME_FORMAT_EXPECTED)  # 年 月 日 时 分 秒 are separators like - and :
    return pattern


def hospital_code(raw: object) -> str:
    """A 医保医疗机构代码 (institution code): printable ASCII, no spaces."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadValue(f"{type(raw).__name__} {raw!r}", "an institution code such as "
                       '"H33010200001"')
    if not raw.isascii() or not raw.isprintable() or " " in raw or len(raw) > 64:
        raise BadValue(f"{raw!r}", "an institution code: up to 64 printable ASCII characters, "
                       "no spaces")
    return raw


def node_name(raw: object) -> str:
    """A node's name among nodes sharing a state store: in task leases and status."""
    expected = 'letters, digits, ".", "-" or "_", 1 to 63 characters (e.g. "gw-a")'
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", raw.strip()):
        raise BadValue(f"{raw!r}", expected)
    return raw.strip()
