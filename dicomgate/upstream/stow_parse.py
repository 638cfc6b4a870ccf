"""Reading a STOW-RS response (PS3.18 10.5.3): what the cloud did with each instance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydicom import Dataset

# FailureReason (0008,1197) codes: what they mean, and what we do about them.
DUPLICATE = 0x0111  # already stored: counts as delivered
PROCESSING_FAILURE = 0x0110
REASONS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance (already stored)",
    0x0112: "no such SOP instance",
    0x0117: "invalid SOP instance",
    0x0119: "class-instance conflict",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}


def reason_text(code: int) -> str:
    name = REASONS.get(code)
    if name is None and 0xA700 <= code <= 0xA7FF:
        name = "out of resources"
    if name is None and 0xC000 <= code <= 0xCFFF:
        name = "cannot understand"
    return f"{name or 'failure'} (FailureReason 0x{code:04X})"


def transient(code: int) -> bool:
    """Out of resources on the cloud's side: the same bytes may be accepted later."""
    return 0xA700 <= code <= 0xA7FF


@dataclass
class StowResponse:
    stored: set[str] = field(default_factory=set)
    warnings: dict[str, str] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    parsed: bool = False  # False: the body said nothing we could read

    def mentioned(self) -> set[str]:
        return self.stored | set(self.failed)


def parse(body: bytes, content_type: str | None) -> StowResponse:
    """Parse a DICOM JSON STOW response; an unreadable one yields `parsed=False`."""
    out = StowResponse()
    if not body or not body.strip():
        return out
    if content_type and "xml" in content_type:
        return out  # we ask for JSON; a server that insists on XML is confirmed by QIDO-RS
    try:
        data = json.loads(body)
        if isinstance(data, list):  # some servers wrap the data set in an array
            data = data[0] if data else {}
        ds = Dataset.from_json(data)
    except (ValueError, TypeError, KeyError, IndexError):
        return out
    out.parsed = True
    for item in ds.get("ReferencedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if not uid:
            continue
        out.stored.add(uid)
        warn = item.get("WarningReason", None)
        if warn is not None:
            out.warnings[uid] = f"WarningReason 0x{int(warn):04X}"
    for item in ds.get("FailedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if uid:
            code = item.get("FailureReason", None)
            out.failed[uid] = int(code) if code is not None else PROCESSING_FAILURE
    return out
