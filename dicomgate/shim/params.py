"""Parameter checking that names every missing or invalid parameter (spec code 202)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping

# Spellings the PACS vendors really send, canonical name first. The spec's own tables spell
# hospitalId as "hospitalld" (double l) and mix accessNumber / accessionNo.
ALIASES: dict[str, tuple[str, ...]] = {
    "hospitalId": ("hospitalId", "hospitalld", "hospitalID", "hospital_id"),
    "accessNumber": ("accessNumber", "accessionNo", "accessionNumber", "accession_no"),
    "accessionNo": ("accessionNo", "accessNumber", "accessionNumber", "accession_no"),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ParamError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class ForeignHospital(ParamError):
    """The request names a hospital this gateway does not act for (audited by the server)."""

    def __init__(self, problems: list[str], hospital_id: str):
        super().__init__(problems)
        self.hospital_id = hospital_id


class Params:
    """Reads parameters, collecting every problem, then `done()` raises them together."""

    def __init__(self, raw: Mapping[str, str], default_hospital: str,
                 served: Collection[str] | None = None, problems: Iterable[str] = ()):
        """`problems`: those the endpoint's schema found already (schema.read); the fields
        they name are not checked again."""
        self.raw = raw
        self.default_hospital = default_hospital
        self.served = served  # the hospitalIds this gateway acts for; None: no check
        self.problems: list[str] = list(problems)
        self.foreign: str | None = None

    def reported(self, name: str) -> bool:
        return any(p.startswith(name + " ") for p in self.problems)

    def get(self, name: str) -> str:
        for alias in ALIASES.get(name, (name,)):
            value = self.raw.get(alias)
            if value is not None and value.strip():
                return value.strip()
        return ""

    def required(self, name: str, what: str, max_len: int = 64,
                 check: Callable[[str], str | None] | None = None) -> str:
        value = self.get(name)
        if not value:
            if not self.reported(name):
                self.problems.append(f"{name} missing ({what})")
            return ""
        return self._check(name, value, what, max_len, check)

    def optional(self, name: str, what: str, max_len: int = 64,
                 check: Callable[[str], str | None] | None = None) -> str:
        value = self.get(name)
        return self._check(name, value, what, max_len, check) if value else ""

    def choice(self, name: str, choices: dict[str, str], required: bool = True) -> str:
        value = self.get(name)
        expected = ", ".join(f"{k} {v}" for k, v in choices.items())
        if not value:
            if required and not self.reported(name):
                self.problems.append(f"{name} missing (one of: {expected})")
            return ""
        if value not in choices:
            self.problems.append(f"{name} invalid: {value[:20]!r} (one of: {expected})")
            return ""
        return value

    def hospital(self, required: bool = False) -> str:
        """hospitalId, checked against the hospitals served; when absent: missing if
        `required` (the QR calls, where the spec makes it required), else ours."""
        if self.reported("hospitalId"):
            return ""
        if required and not self.get("hospitalId"):
            self.problems.append("hospitalId missing (医保医疗机构代码, also spelled "
                                 "hospitalld)")
            return ""
        value = self._check("hospitalId", self.get("hospitalId") or self.default_hospital,
                            "医保医疗机构代码", 64, None)
        if value and self.served is not None and value not in self.served:
            self.foreign = value
            self.problems.append(
                f"hospitalId {value[:64]!r} is not served by this gateway (it acts only for "
                f"{', '.join(self.served)}: gateway.hospital_id, gateway.group_hospital_ids)")
            return ""
        return value

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def done(self) -> None:
        if self.foreign is not None:
            raise ForeignHospital(self.problems, self.foreign)
        if self.problems:
            raise ParamError(self.problems)

    def _check(self, name: str, value: str, what: str, max_len: int,
               check: Callable[[str], str | None] | None) -> str:
        if len(value) > max_len:
            self.problems.append(f"{name} too long: {len(value)} characters ({what}, at "
                                 f"most {max_len})")
            return ""
        if _CONTROL.search(value):
            self.problems.append(f"{name} contains control characters ({what})")
            return ""
        if check is not None:
            problem = check(value)
            if problem:
                self.problems.append(f"{name} invalid: {problem}")
                return ""
        return value


def no_chars(chars: str, why: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        bad = sorted({c for c in value if c in chars})
        return f"contains {' '.join(bad)} ({why})" if bad else None
    return check
