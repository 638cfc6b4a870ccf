"""GB 11643-1999 resident identity numbers: 18 characters, ISO 7064 MOD 11-2 check digit."""

from __future__ import annotations

import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def id_problem(value: str) -> str | None:
    """None for a valid number, else what is wrong (never echoing the number)."""
    v = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", v):
        return f"{len(v)} characters, expected 17 digits and a check digit (0-9 or X)"
    try:
        dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return "birth date (characters 7-14) is not a date"
    if check_digit(v[:17]) != v[17]:
        return "check digit does not match (GB 11643)"
    return None
