"""Strict decoding of query strings, form bodies and JSON bodies.

Invalid UTF-8 is refused, never replaced: `%FF` and `%FE` would otherwise both become U+FFFD
and two different accession numbers would share one QR URL. JSON bodies are checked for depth
before parsing (a deeply nested body would exhaust Python's recursion limit).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from .params import ParamError
from .schema import JsonNumber

MAX_JSON_DEPTH = 16  # the shim's bodies are flat objects of parameters
MAX_FIELDS = 200


class BadBody(ValueError):
    """The body cannot be read; the message says what was expected."""


def decode_pairs(text: str, where: str, plus_is_space: bool = False) -> dict[str, str]:
    """`a=1&b=2` -> {"a": "1", "b": "2"}: first value wins (see `pairs`)."""
    out: dict[str, str] = {}
    for key, value in pairs(text, where, plus_is_space):
        out.setdefault(key, value)
    return out


def pairs(text: str, where: str, plus_is_space: bool = False) -> list[tuple[str, str]]:
    """`a=1&b=2` -> [("a", "1"), ("b", "2")], repeats kept; names every parameter whose
    value is not UTF-8. `+` stays `+` in query strings (base64 survives) unless told."""
    out: list[tuple[str, str]] = []
    bad: list[str] = []
    pieces = [p for p in text.split("&") if p]
    if len(pieces) > MAX_FIELDS:
        raise ParamError([f"too many parameters in the {where}: {len(pieces)} "
                          f"(at most {MAX_FIELDS})"])
    for piece in pieces:
        raw_key, _, raw_value = piece.partition("=")
        if plus_is_space:
            raw_key, raw_value = raw_key.replace("+", " "), raw_value.replace("+", " ")
        key = _utf8(raw_key)
        if key is None:
            bad.append(f"a parameter name in the {where} is not valid UTF-8 "
                       f"({raw_key[:30]!r}; expected UTF-8 percent-encoding)")
            continue
        key = key.strip()
        value = _utf8(raw_value)
        if value is None:
            bad.append(f"{key} invalid: not valid UTF-8 ({raw_value[:30]!r}; expected UTF-8 "
                       "percent-encoding, e.g. 张 = %E5%BC%A0)")
            continue
        out.append((key, value))
    if bad:
        raise ParamError(bad)
    return out


def _utf8(raw: str) -> str | None:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the request body is not valid UTF-8 (byte {exc.start}: "
                      f"{body[exc.start:exc.start + 1].hex()})") from None


def json_fields(text: str) -> dict[str, Any]:
    """The JSON object as parsed, numbers kept as JsonNumber (the schema refuses them with
    the field's name: converting a 5,000-digit integer or 1e999999 is not safe)."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BadBody(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep "
                      "(expected a flat object of parameters)")
    try:
        data = json.loads(text, parse_int=JsonNumber, parse_float=JsonNumber,
                          parse_constant=JsonNumber)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the JSON body does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody("the JSON body must be an object of parameters")
    if len(data) > MAX_FIELDS:
        raise BadBody(f"the JSON body has {len(data)} fields (at most {MAX_FIELDS})")
    return data


def json_depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, in one linear pass (stops early)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest
