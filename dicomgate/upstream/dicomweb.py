"""DICOMweb client for the cloud: STOW-RS of a batch of spool files, QIDO-RS of a study."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import stow_parse
from .errors import CONFIG_STATUSES, Refused, Transient, check_status, server_reason
from .multipart import MultipartStream
from .transport import Transport

QIDO_PAGE = 1000
MAX_PROCESSING_RETRIES = 3  # 0x0110 "processing failure" is generic: a few tries, then rejected


@dataclass
class BatchOutcome:
    """What became of each instance of one STOW-RS request."""
    uploaded: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)   # sop -> the cloud's reason
    resend: list[str] = field(default_factory=list)          # unclear: send alone
    retry: list[str] = field(default_factory=list)           # transient: keep for later
    error: Transient | None = None
    http_status: int | None = None


class DicomWebClient:
    def __init__(self, transport: Transport, base_url: str):
        self.transport = transport
        self.base = base_url.rstrip("/")

    # -- STOW-RS ------------------------------------------------------------------------------
    def stow(self, items: list[tuple[str, Path]], attempts: dict[str, int]) -> BatchOutcome:
        """POST one batch; `items` are (SOPInstanceUID, spool path) pairs."""
        uids = [u for u, _ in items]
        try:
            body = MultipartStream([p for _, p in items])
            r = self.transport.request(
                "dicomweb", "POST", f"{self.base}/studies", "STOW-RS", check=False,
                data=body, headers={"Content-Type": body.content_type,
                                    "Accept": "application/dicom+json"})
        except Transient as exc:
            return BatchOutcome(retry=uids, error=exc)
        except OSError as exc:  # a spool file vanished or changed while being read
            return BatchOutcome(retry=uids, error=Transient(f"STOW-RS: reading spool: {exc}"))
        out = BatchOutcome(http_status=r.status_code)
        code = r.status_code
        if code in (408, 429) or code >= 500 or code in CONFIG_STATUSES:
            try:
                check_status(r, "STOW-RS")
            except Transient as exc:
                out.retry, out.error = uids, exc
                return out
        parsed = stow_parse.parse(r.content, r.headers.get("Content-Type"))
        self._per_instance(out, parsed, uids, attempts)
        unmentioned = [u for u in uids if u not in parsed.mentioned()]
        if 200 <= code < 300:
            out.uploaded += unmentioned  # accepted as a whole; QIDO-RS confirms each
        elif len(uids) == 1 and unmentioned:
            out.rejected[uids[0]] = f"cloud refused it: HTTP {code}: {server_reason(r)}"
        else:
            out.resend += unmentioned  # a 4xx for the batch: find the culprit alone
        return out

    @staticmethod
    def _per_instance(out: BatchOutcome, parsed: stow_parse.StowResponse, uids: list[str],
                      attempts: dict[str, int]) -> None:
        ours = set(uids)
        out.uploaded += [u for u in uids if u in parsed.stored]
        for uid, reason in parsed.failed.items():
            if uid not in ours or uid in parsed.stored:
                continue
            if reason == stow_parse.DUPLICATE:
                out.uploaded.append(uid)
            elif stow_parse.transient(reason) or (
                    reason == stow_parse.PROCESSING_FAILURE
                    and attempts.get(uid, 0) < MAX_PROCESSING_RETRIES):
                out.retry.append(uid)
                out.error = out.error or Transient(
                    f"STOW-RS: cloud reported {stow_parse.reason_text(reason)}")
            else:
                out.rejected[uid] = f"cloud refused it: {stow_parse.reason_text(reason)}"

    # -- QIDO-RS ------------------------------------------------------------------------------
    def study_sop_uids(self, study_uid: str) -> set[str]:
        """Every SOPInstanceUID the cloud lists for the study (empty if it has none)."""
        found: set[str] = set()
        offset = 0
        for _ in range(10_000):  # bounded: 10 million instances
            r = self.transport.request(
                "dicomweb", "GET", f"{self.base}/studies/{study_uid}/instances", "QIDO-RS",
                check=False, headers={"Accept": "application/dicom+json"},
                params={"includefield": "00080018", "limit": QIDO_PAGE, "offset": offset})
            if r.status_code in (204, 404):
                return found
            check_status(r, "QIDO-RS")
            try:
                page = r.json()
            except ValueError:
                raise Transient("QIDO-RS: the cloud answered with something that is not "
                                "DICOM JSON") from None
            for item in page:
                values = (item.get("00080018") or {}).get("Value") or []
                if values:
                    found.add(str(values[0]))
            if len(page) < QIDO_PAGE:
                return found
            offset += len(page)
        return found

    # -- WADO-RS ------------------------------------------------------------------------------
    def instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes | None:
        """The cloud's copy of one instance as stored (Part 10), None when it has none.
        Used only to check a replaced instance, so holding it in memory is acceptable."""
        r = self.transport.request(
            "dicomweb", "GET", f"{self.base}/studies/{study_uid}/series/{series_uid}/"
            f"instances/{sop_uid}", "WADO-RS", check=False,
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        if r.status_code in (204, 404):
            return None
        check_status(r, "WADO-RS")
        part = first_part(r.content, r.headers.get("Content-Type", ""))
        if part is None:
            raise Transient("WADO-RS: the cloud's answer is not a multipart DICOM response")
        return part

    def probe(self) -> None:
        """Cheap reachability check: raises Transient/Refused when the cloud does not answer."""
        self.transport.request("dicomweb", "GET", f"{self.base}/studies", "QIDO-RS probe",
                               params={"limit": 1},
                               headers={"Accept": "application/dicom+json"})


def first_part(body: bytes, content_type: str) -> bytes | None:
    """The content of the first part of a multipart/related body."""
    boundary = None
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return None
    delim = b"--" + boundary.encode()
    start = body.find(delim)
    if start < 0:
        return None
    head_end = body.find(b"\r\n\r\n", start)
    end = body.find(b"\r\n" + delim, head_end)
    if head_end < 0 or end < 0:
        return None
    return body[head_end + 4:end]


__all__ = ["BatchOutcome", "DicomWebClient", "Refused", "Transient"]
