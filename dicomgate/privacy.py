"""Masking of personal data: names, ID card numbers, phone numbers.

Used by the log pipeline (for every event) and by the CLI (unless --reveal)."""

from __future__ import annotations

import re
from typing import Any


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


NAME_KEYS = {_norm(k) for k in (
    "patientName", "doctorName", "operateDoctorName", "applyDoctor", "reportDoctor",
    "auditDoctor", "patient_name", "doctor_name", "PatientName")}
ID_KEYS = {_norm(k) for k in ("idCardNo", "doctorIdCardNo", "id_card_no", "idCard", "sfzh",
                              "PatientID_card")}
PHONE_KEYS = {_norm(k) for k in ("phoneNumber", "phone", "mobile", "telephone", "tel")}

# Free text: an 18-character resident ID or an 11-digit mainland mobile number that is not
# part of a longer number or a DICOM UID (digits and dots).
_ID_RE = re.compile(r"(?<![\d.])(\d{6})\d{8}(\d{3}[\dXx])(?![\d.])")
_PHONE_RE = re.compile(r"(?<![\d.])1[3-9]\d{5}(\d{4})(?![\d.])")


def mask_name(value: str) -> str:
    value = value.strip()
    return value[:1] + "*" * max(1, min(len(value) - 1, 3)) if value else value


def mask_id(value: str) -> str:
    value = value.strip()
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str) -> str:
    value = value.strip()
    return "*" * max(0, len(value) - 4) + value[-4:]


def mask_text(text: str) -> str:
    text = _ID_RE.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    return _PHONE_RE.sub(lambda m: "*******" + m.group(1), text)


def mask_value(key: str, value: Any) -> Any:
    """Mask `value` according to what its key says it is; recurse into containers."""
    k = _norm(key)
    if isinstance(value, dict):
        return mask_mapping(value)
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    if not isinstance(value, str):
        value = value if not isinstance(value, bytes) else value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return value
    if k in NAME_KEYS:
        return mask_name(value)
    if k in ID_KEYS:
        return mask_id(value)
    if k in PHONE_KEYS:
        return mask_phone(value)
    return mask_text(value)


def mask_mapping(d: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_value(str(k), v) for k, v in d.items()}
