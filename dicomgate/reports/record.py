"""The canonical exam record: normalise one PACS row and check it against spec section 5.

A row is a mapping of canonical field names to raw values (ODBC types or JSON values).
Bad values become `Problem`s (the row is quarantined); doubtful ones `warnings` (kept).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .. import idcard
from ..exam_record import CANONICAL_FIELDS, TIME_FIELDS
from . import dictionaries, time_format
from .events import REPORT_TEXT, EventType, implied_by

TIME_EXPECTED = ("yyyy-MM-dd HH:mm:ss local time, ISO 8601 with an offset such as +08:00, "
                 "or the view's reports.view.time_format")
_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
# Latin-1 letters or U+FFFD in a Chinese hospital's text: GBK bytes decoded as something else.
_MOJIBAKE_RE = re.compile("[\u00c0-\u00ff\ufffd]")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
FREE_TEXT = ("examFindings", "examConclusion")  # where tabs and line breaks belong
_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}([\\/][A-Z0-9_]{1,16})*$")

# What every exam row needs for the cloud to file it (spec 4.1; types 1, 3 and 4: a refund
# row only needs its key and refund time).
EXAM_REQUIRED = ("patientName", "modality", "examTime")
# Times outside [now - PAST, now + FUTURE] are typing errors (9999-12-31, 1900-01-01): the
# exam would sort and expire wrongly everywhere. A PACS clock ahead by more than a day is
# refused by sync --check before it gets here.
TIME_PAST = dt.timedelta(days=366 * 30)
TIME_FUTURE = dt.timedelta(days=1)
# The longest value dicomgate sends per field (characters). The spec gives no lengths: these
# are what the cloud's report API accepts (docs/upstream-api.md). A longer value is
# quarantined, never cut.
FREE_TEXT_MAX = 20_000
MAX_LENGTH = {
    "accessionNo": 64, "hospitalId": 32, "studyInstanceUid": 64, "patientId": 64,
    "patientName": 64, "idCardNo": 32, "age": 32, "mdtrtId": 64, "psnNo": 64,
    "modality": 64, "examPart": 64, "examPartName": 256, "examItemName": 256,
    "applyDept": 128, "applyDoctor": 64, "reportDoctor": 64, "auditDoctor": 64,
    "imagePath": 4096, "examFindings": FREE_TEXT_MAX, "examConclusion": FREE_TEXT_MAX,
}


@dataclass(frozen=True)
class Problem:
    field: str
    value: str | None
    expected: str

    def __str__(self) -> str:
        got = "missing" if self.value is None else repr(self.value)
        return f"{self.field}: {got} (expected {self.expected})"


@dataclass
class Normalised:
    record: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(str(p) for p in self.problems)


@dataclass(frozen=True)
class Rules:
    hospital_id: str
    timezone: ZoneInfo
    image_urls_required: bool = False  # images come by HTTP GET of imagePath (4.2 mode 2)
    encoding: str = ""  # reports.view.encoding: how bytes (BLOB) values are decoded
    # gateway.group_hospital_ids: the other codes this gateway acts for (ours is implied)
    group_hospital_ids: tuple[str, ...] = ()

    @property
    def served(self) -> tuple[str, ...]:
        return (self.hospital_id, *(h for h in self.group_hospital_ids
                                    if h != self.hospital_id))


def normalise(row: dict[str, Any], rules: Rules,
              events: Sequence[EventType] | None = None) -> Normalised:
    """Canonical values for every field present in `row` (absent fields stay absent).

    `events` are the event types the row was read for (their time fields are
    required); None: those its times imply (a row read by accession number)."""
    out = Normalised({})
    for name, raw in row.items():
        if name not in CANONICAL_FIELDS:
            continue
        if isinstance(raw, dt.date | dt.datetime):
            out.record[name] = raw
            continue
        try:
            out.record[name] = _clean(name, _text(raw, rules.encoding), out)
        except UnicodeDecodeError as exc:
            out.record[name] = None
            enc = rules.encoding or "utf-8"
            # the bytes themselves are not shown: they may be a patient's name
            out.problems.append(Problem(name, f"<{len(exc.object)} bytes, not {enc} at byte "
                                        f"{exc.start}>", f"text in {enc}: set "
                                        "reports.view.encoding to the database's encoding "
                                        "(gbk, gb18030, utf-8)"))
    rec = out.record
    garbled = [k for k, v in rec.items() if isinstance(v, str) and _MOJIBAKE_RE.search(v)]
    if garbled:
        out.warnings.append(f"{', '.join(garbled)}: text looks mis-decoded (GBK read as "
                            "another encoding?): set reports.view.encoding = \"gbk\"")
    rec["hospitalId"] = rec.get("hospitalId") or rules.hospital_id
    _lengths(rec, out)
    _hospital(rec, rules, out)
    now = dt.datetime.now(rules.timezone)
    for name in TIME_FIELDS:
        if name in rec:
            rec[name] = _time(rec[name], name, rules.timezone, out, now)
    if "birthDate" in rec:
        rec["birthDate"] = _date(rec["birthDate"], out)
    for name in dictionaries.DICTIONARIES:
        if rec.get(name) is not None:
            _code(rec, name, out)
    _identity(rec, out)
    _modality(rec, out)
    _image_paths(rec, rules, out)
    _required(rec, implied_by(rec) if events is None else events, out)
    return out


def _text(raw: Any, encoding: str = "") -> str | None:
    """A stripped string, or None for NULL/empty. Bytes (a BLOB column) are decoded with
    reports.view.encoding (UTF-8 when unset); UnicodeDecodeError when they do not fit."""
    if raw is None:
        return None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode(encoding or "utf-8")
    elif isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, float) and raw.is_integer() or isinstance(raw, Decimal) and raw == \
            raw.to_integral_value():
        raw = int(raw)  # numeric columns: 2.0 -> "2"
    text = str(raw).strip()
    return text or None


def _clean(name: str, text: str | None, out: Normalised) -> str | None:
    """Remove NUL and other control characters (tab and line breaks stay in free text),
    with a warning on the exam: a value is never cut short without a trace."""
    if text is None or not _CONTROL_RE.search(text):
        return text
    keep = "\t\r\n" if name in FREE_TEXT else ""
    bad = sorted({f"U+{ord(c):04X}" for c in text if _CONTROL_RE.match(c) and c not in keep})
    if not bad:
        return text
    out.warnings.append(f"{name}: control characters removed ({', '.join(bad)})")
    return "".join(c for c in text if c in keep or not _CONTROL_RE.match(c)).strip() or None


def _lengths(rec: dict[str, Any], out: Normalised) -> None:
    """A value longer than the cloud takes is refused with its length; the quarantined
    record keeps no part of it (a cut report would read as a whole one)."""
    for name, limit in MAX_LENGTH.items():
        value = rec.get(name)
        if isinstance(value, str) and len(value) > limit:
            rec[name] = None
            out.problems.append(Problem(name, f"<{len(value)} characters>",
                                        f"at most {limit} characters (what the cloud accepts)"))


def _hospital(rec: dict[str, Any], rules: Rules, out: Normalised) -> None:
    """A row of a hospital this gateway does not serve is never delivered under our name."""
    hid = rec.get("hospitalId")
    if hid and hid not in rules.served:
        out.problems.append(Problem("hospitalId", hid, "one of the hospitals this gateway "
                                    f"serves: {', '.join(rules.served)} (gateway.hospital_id, "
                                    "gateway.group_hospital_ids)"))


def _time(raw: Any, name: str, tz: ZoneInfo, out: Normalised, now: dt.datetime
          ) -> str | None:
    if raw is None:
        return None
    value = parse_time(raw, tz)
    if value is None:
        out.problems.append(Problem(name, str(raw), TIME_EXPECTED))
        return None
    text = value.isoformat(timespec="seconds")
    if not now - TIME_PAST <= value <= now + TIME_FUTURE:
        out.problems.append(Problem(name, text, "a time between "
                                    f"{(now - TIME_PAST):%Y-%m-%d} and "
                                    f"{(now + TIME_FUTURE):%Y-%m-%d %H:%M} (now, "
                                    f"{tz.key}, give or take)"))
        return None
    return text


def parse_time(raw: Any, tz: ZoneInfo) -> dt.datetime | None:
    """An aware datetime; naive values are `tz` local time. None when not a time."""
    return time_format.parse_any(raw, tz)


def _date(raw: Any, out: Normalised) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, dt.date):
        return raw.isoformat()[:10]
    text = str(raw).strip().replace("/", "-")
    if re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        out.problems.append(Problem("birthDate", str(raw), "a date yyyy-MM-dd"))
        return None


def _code(rec: dict[str, Any], name: str, out: Normalised) -> None:
    raw = rec[name]
    code = dictionaries.lookup(name, raw)
    if code is None:
        out.problems.append(Problem(name, raw, dictionaries.expected(name)))
    rec[name] = code


def _identity(rec: dict[str, Any], out: Normalised) -> None:
    number = rec.get("idCardNo")
    if not number:
        return
    rec["idCardNo"] = number = number.upper()
    wrong = idcard.problem(number, allow_legacy15=True)
    if wrong:  # flagged, not refused: the exam still belongs to the patient
        out.warnings.append(f"idCardNo: {wrong}")


def _modality(rec: dict[str, Any], out: Normalised) -> None:
    modality = rec.get("modality")
    if modality:
        rec["modality"] = modality = modality.upper()
        if not _MODALITY_RE.match(modality):
            out.warnings.append(f"modality: {modality!r} is not a DICOM modality code")
    if not rec.get("imgExamType") and not any(p.field == "imgExamType" for p in out.problems):
        derived = dictionaries.exam_type_for(modality)
        rec["imgExamType"] = derived
        if derived is None and modality:
            out.warnings.append(f"imgExamType: missing and modality {modality!r} does not "
                                "imply one (expected CR/DX/DR/MG/RF/XA, CT, MR, US, NM/PT)")
    uid = rec.get("studyInstanceUid")
    if uid and (len(uid) > 64 or not _UID_RE.match(uid)):
        out.problems.append(Problem("studyInstanceUid", uid,
                                    "a DICOM UID: digits and dots, at most 64 characters"))


def _image_paths(rec: dict[str, Any], rules: Rules, out: Normalised) -> None:
    paths = image_paths(rec.get("imagePath"))
    bad = [p for p in paths if not p.lower().startswith(("http://", "https://"))]
    if bad and rules.image_urls_required:
        out.problems.append(Problem("imagePath", bad[0], "http:// or https:// URLs separated "
                                    "by ';' (images.source = \"http\")"))
    elif rules.image_urls_required and not paths and rec.get("examTime"):
        out.warnings.append("imagePath: empty while images.source = \"http\"")


def image_paths(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(";") if p.strip()]


def _required(rec: dict[str, Any], events: Sequence[EventType], out: Normalised) -> None:
    failed = {p.field for p in out.problems}
    if not rec.get("accessionNo"):
        out.problems.append(Problem("accessionNo", None, "a value; required: the exam's key"))
    for event in events:
        needed = event.required + (EXAM_REQUIRED if event.code != 2 else ())
        for name in dict.fromkeys(needed):
            if not rec.get(name) and name not in failed:
                failed.add(name)
                out.problems.append(Problem(name, None, f"a value; required for type "
                                            f"{event.code} ({event.name})"))
        if event.code in (3, 4) and not any(rec.get(f) or f in failed for f in REPORT_TEXT):
            out.problems.append(Problem("examConclusion", None, "report text in examFindings "
                                        f"or examConclusion; required for type {event.code}"))
    acc = rec.get("accessionNo")
    if acc and len(acc) > 64:
        out.problems.append(Problem("accessionNo", acc, "at most 64 characters"))
