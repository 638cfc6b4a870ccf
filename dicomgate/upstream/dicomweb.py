"""DICOMweb client for the cloud: STOW-RS of a batch of spool files, QIDO-RS of a study."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from . import stow_parse
from .errors import CONFIG_STATUSES, Refused, Transient, check_status, server_reason
from .multipart import MultipartStream
from .transport import Transport

log = structlog.get_logger("dicomgate.upstream")

QIDO_PAGE = 1000
QIDO_LIST_STUDIES = 40  # studies per list query: 40 UIDs of 64 characters keep the URL < 3 KB
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
        # QIDO-RS UID list matching: None until a list query proved it either way.
        self.list_matching: bool | None = None
        self._mine = threading.local()  # QIDO-RS requests made by this thread

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
        for page in self._qido_pages(f"{self.base}/studies/{study_uid}/instances",
                                     {"includefield": "00080018"}):
            for item in page:
                sop = _value(item, "00080018")
                if sop:
                    found.add(sop)
        return found

    def qido_requests(self) -> int:
        """QIDO-RS requests answered so far to the calling thread (for the logs)."""
        return getattr(self._mine, "qido", 0)

    def studies_sop_uids(self, study_uids: list[str]) -> dict[str, set[str]]:
        """What the cloud lists for each of several studies, by as few QIDO-RS requests as
        the server allows: one `GET /instances?StudyInstanceUID=a,b,...` per
        QIDO_LIST_STUDIES studies (UID list matching, PS3.18 8.3.4.1), else one per study.

        A server that does not do list matching refuses the query (a 4xx), ignores the key
        (other studies come back), or matches the list as one literal UID and lists nothing:
        until one answer has named two of the listed studies, a study listed as empty is
        asked for alone, and if that finds instances the list did not, list matching is off
        for this client from then on."""
        out: dict[str, set[str]] = {}
        uids = list(dict.fromkeys(study_uids))
        if len(uids) > 1 and self.list_matching is not False:
            for i in range(0, len(uids), QIDO_LIST_STUDIES):
                chunk = uids[i:i + QIDO_LIST_STUDIES]
                listed = self._list_query(chunk)
                if listed is None:
                    break
                out.update(listed)
        for uid in uids:
            if uid not in out:
                out[uid] = self.study_sop_uids(uid)
            elif not out[uid] and self.list_matching is not True:
                alone = self.study_sop_uids(uid)
                if alone:
                    self._list_matching_off(f"the list query missed study {uid}")
                out[uid] = alone
        return out

    def _list_query(self, uids: list[str]) -> dict[str, set[str]] | None:
        """One study-list query; None when the server will not answer it as a list."""
        found: dict[str, set[str]] = {u: set() for u in uids}
        try:
            for page in self._qido_pages(f"{self.base}/instances",
                                         {"StudyInstanceUID": ",".join(uids),
                                          "includefield": ["00080018", "0020000D"]}):
                for item in page:
                    study, sop = _value(item, "0020000D"), _value(item, "00080018")
                    if study not in found:  # not ours, or not said: the list was ignored
                        self._list_matching_off("the answer holds other studies, or does "
                                                "not say which study an instance is of")
                        return None
                    if sop:
                        found[study].add(sop)
        except Refused as exc:  # e.g. 400: "StudyInstanceUID takes one value"
            self._list_matching_off(str(exc))
            return None
        if sum(1 for sops in found.values() if sops) >= 2:
            self.list_matching = True  # one answer named two of the studies: lists work
        return found

    def _list_matching_off(self, why: str) -> None:
        if self.list_matching is not False:
            log.info("qido.list_matching_off", reason=why,
                     effect="each study is checked by a QIDO-RS request of its own")
        self.list_matching = False

    def _qido_pages(self, url: str, params: dict) -> Iterator[list[dict]]:
        offset = 0
        for _ in range(10_000):  # bounded: 10 million instances
            r = self.transport.request(
                "dicomweb", "GET", url, "QIDO-RS", check=False,
                headers={"Accept": "application/dicom+json"},
                params={**params, "limit": QIDO_PAGE, "offset": offset})
            if r.status_code in (204, 404):
                return
            check_status(r, "QIDO-RS")
            try:
                page = r.json()
            except ValueError:
                raise Transient("QIDO-RS: the cloud answered with something that is not "
                                "DICOM JSON") from None
            if not isinstance(page, list):
                raise Transient("QIDO-RS: the cloud's answer is not a JSON array")
            self._mine.qido = self.qido_requests() + 1
            yield page
            if len(page) < QIDO_PAGE:
                return
            offset += len(page)

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


def _value(item: dict, tag: str) -> str | None:
    values = (item.get(tag) or {}).get("Value") or [] if isinstance(item, dict) else []
    return str(values[0]) if values else None


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
