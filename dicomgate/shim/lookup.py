"""External exam reminder (spec 4.4.3.2): `/iuWorkStation/swipingIdCardNo`.

For a doctor with an open login session, query the provincial and the national platforms
in parallel (DICOMweb QIDO-RS, `GET /studies?PatientID=<idCardNo>`), drop this hospital's
own studies (known locally, or InstitutionName = our hospital id), merge by
StudyInstanceUID, and answer a summary. One platform failing still answers the other's.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
import structlog

from ..config.model import LookupConfig
from ..http_client import ThreadSessions
from ..privacy import mask_id, mask_name
from ..state import Store
from .http import BAD_PARAMS, INTERNAL, OK, Request, Response, reply
from .params import Params, no_chars
from .schema import Schema, text

log = structlog.get_logger("dicomgate.shim.lookup")

PATH = "/iuWorkStation/swipingIdCardNo"

PLATFORM_NAMES = {"province": "省医保影像云平台", "national": "国家医保影像云平台"}
_TAGS = {
    "studyInstanceUid": "0020000D", "studyDate": "00080020", "modality": "00080061",
    "description": "00081030", "hospital": "00080080", "accessionNo": "00080050",
    "bodyPart": "00180015", "instances": "00201208",
}
# A QIDO-RS value with these matches other patients (wildcards) or several values.
_WILDCARDS = "*?\\,"


@dataclass
class PlatformResult:
    name: str
    studies: list[dict[str, Any]] | None
    error: str | None = None


class LookupQuery(Schema):
    """Query string or body (GET or POST), each field in one of them."""
    places: ClassVar[tuple[str, ...]] = ("query", "body")
    hisUserId: str = text("PACS 登录账号 (must have an open login session)")
    idCardNo: str = text("患者身份证号 (PatientID on the platforms)")
    patientName: str = text("患者姓名", required=False)
    hospitalId: str = text("医保医疗机构代码 (default: this gateway's gateway.hospital_id)",
                           required=False)


class LookupEndpoint:
    def __init__(self, config: LookupConfig, store: Store, served: tuple[str, ...],
                 concurrent: int = 4):
        self.config = config
        self._sessions = ThreadSessions(config, served[0])  # TLS / CA / auth of [lookup]
        self.store = store
        self.served = served  # ours first; every one of them is "own", never "external"
        self.platforms = {name: url for name, url in (
            ("province", config.province_dicomweb_url),
            ("national", config.national_dicomweb_url)) if url}
        # One thread per platform for each lookup the shim runs at once (shim.lookup_threads).
        self._pool = cf.ThreadPoolExecutor(max_workers=max(2, concurrent * len(self.platforms)),
                                           thread_name_prefix="shim-lookup-peer")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, req: Request) -> Response:
        fields, problems = req.fields(LookupQuery)
        p = Params(fields, self.served[0], self.served, problems)
        his_user_id = p.required("hisUserId", "PACS 登录账号")
        id_card_no = p.required("idCardNo", "患者身份证号 (PatientID on the platforms)",
                                check=no_chars(_WILDCARDS, "no wildcards or lists"))
        patient_name = p.optional("patientName", "患者姓名")
        hospital = p.hospital()
        p.done()
        req.context.update(his_user_id=his_user_id, idCardNo=id_card_no)
        if self.store.sessions.active(hospital, his_user_id) is None:
            return reply(BAD_PARAMS, f"hisUserId {his_user_id} has no open login session at "
                                     f"{hospital} (the PACS must call /hrball/ with type=1 "
                                     "when the doctor logs in)")
        results = self._query_all(id_card_no)
        return self._answer(results, his_user_id, id_card_no, patient_name, hospital)

    def _query_all(self, patient_id: str) -> list[PlatformResult]:
        futures = {name: self._pool.submit(self._query, name, url, patient_id)
                   for name, url in self.platforms.items()}
        done, _ = cf.wait(futures.values(), timeout=self.config.timeout + 1.0)
        out = []
        for name, fut in futures.items():
            if fut in done:
                out.append(fut.result())
            else:
                fut.cancel()
                out.append(PlatformResult(name, None, f"no answer within "
                                                      f"{self.config.timeout:g}s"))
        return out

    def _query(self, name: str, base: str, patient_id: str) -> PlatformResult:
        url = f"{base}/studies"
        try:
            # One includefield per tag: Orthanc's DICOMweb plugin ignores a comma list.
            r = self._sessions.get().get(
                url, params=[("PatientID", patient_id)] + [
                    ("includefield", tag) for tag in _TAGS.values()],
                headers={"Accept": "application/dicom+json"}, timeout=self.config.timeout)
        except requests.Timeout:
            return PlatformResult(name, None, f"{url}: no answer within "
                                              f"{self.config.timeout:g}s")
        except requests.RequestException as exc:
            return PlatformResult(name, None, f"{url}: unreachable ({type(exc).__name__})")
        if r.status_code == 204:
            return PlatformResult(name, [])
        if r.status_code != 200:
            return PlatformResult(name, None, f"{url}: HTTP {r.status_code}")
        try:
            data = r.json()
            if not isinstance(data, list):
                raise ValueError("not a JSON array")
            return PlatformResult(name, [_summary(d, name) for d in data if isinstance(d, dict)])
        except ValueError as exc:
            return PlatformResult(name, None, f"{url}: answer is not DICOM JSON ({exc})")

    def _answer(self, results: list[PlatformResult], his_user_id: str, id_card_no: str,
                patient_name: str, hospital: str) -> Response:
        merged: dict[str, dict[str, Any]] = {}
        for res in results:
            for s in res.studies or []:
                uid = s["studyInstanceUid"]
                if not uid or s["hospital"] in self.served:
                    continue
                if uid in merged:
                    merged[uid]["source"] += f",{res.name}"
                else:
                    merged[uid] = s
        own = self.store.instances.known_studies(list(merged))
        exams = sorted((s for uid, s in merged.items() if uid not in own),
                       key=lambda s: s["studyDate"] or "", reverse=True)
        failed = [r for r in results if r.studies is None]
        sources = {r.name: ({"ok": True, "count": len(r.studies)} if r.studies is not None
                            else {"ok": False, "error": r.error}) for r in results}
        outcome = "failed" if len(failed) == len(results) else "partial" if failed else "ok"
        self.store.audit.record(his_user_id, "lookup.external", mask_id(id_card_no), outcome, {
            "count": len(exams), "sources": sources, "hospitalId": hospital,
            "patientName": mask_name(patient_name) if patient_name else None})
        log.info("lookup.done", his_user_id=his_user_id, count=len(exams), outcome=outcome,
                 failed=[r.name for r in failed])
        if outcome == "failed":
            return reply(INTERNAL, "外院检查查询失败: " + "; ".join(
                f"{PLATFORM_NAMES[r.name]}: {r.error}" for r in failed))
        message = "请求成功" if not failed else "请求成功（部分平台查询失败: " + "; ".join(
            f"{PLATFORM_NAMES[r.name]}: {r.error}" for r in failed) + "）"
        return reply(OK, message, {"count": len(exams), "exams": exams, "sources": sources})


def _summary(d: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: _value(d, tag) for k, tag in _TAGS.items()}
    date = out["studyDate"]
    if date and len(date) == 8 and date.isdigit():
        out["studyDate"] = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    out["source"] = source
    return out


def _value(d: dict[str, Any], tag: str) -> Any:
    values = (d.get(tag) or {}).get("Value") or []
    values = [v for v in values if v is not None and not isinstance(v, dict)]
    if not values:
        return None
    if tag == "00201208":
        return int(values[0])
    return ",".join(str(v) for v in values)
