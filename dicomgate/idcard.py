"""GB 11643 resident identity numbers: 18 characters, ISO 7064 MOD 11-2 check digit.

Shared by the report records (patients) and the login sync (doctors). Messages never
echo the number: it is personal data."""

from __future__ import annotations

import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def problem(value: str, *, allow_legacy15: bool = False) -> str | None:
    """None for a valid number, else what is wrong.

    `allow_legacy15` accepts a 15-digit first-generation number (no check digit),
    which old PACS records still carry."""
    v = value.strip().upper()
    if allow_legacy15 and len(v) == 15 and v.isdigit():
        return None
    if not re.fullmatch(r"\d{17}[\dX]", v):
        return f"{len(v)} characters, expected 17 digits and a check digit (0-9 or X)"
    try:
        dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return "birth date (characters 7-14) is not a date"
    if check_digit(v[:17]) != v[17]:
        return "check digit wrong (GB 11643): mistyped number?"
    return None
