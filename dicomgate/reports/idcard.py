"""GB 11643 resident identity numbers: the ISO 7064 MOD 11-2 check digit."""

from __future__ import annotations

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def problem(number: str) -> str | None:
    """None when `number` is a plausible ID number, else what is wrong (without the number)."""
    if len(number) == 15 and number.isdigit():  # first-generation card: no check digit
        return None
    if len(number) != 18 or not number[:17].isdigit() or number[17] not in "0123456789X":
        return "not 18 characters of digits with a final digit or X (GB 11643)"
    if check_digit(number[:17]) != number[17]:
        return "check digit wrong (GB 11643): mistyped number?"
    return None
