"""The OpenAPI 3.0 document served at /openapi.json (what PACS vendors integrate against)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from . import deletion, login, lookup, qr_endpoint


def _param(name: str, desc: str, required: bool = True, where: str = "query") -> dict:
    return {"name": name, "in": where, "required": required, "description": desc,
            "schema": {"type": "string"}}


_HOSPITAL = [_param("hospitalId", "医保医疗机构代码 (also spelled hospitalld); default: "
                                  "this gateway's gateway.hospital_id", False)]

_ANSWER = {
    "type": "object", "required": ["code", "message", "data"],
    "properties": {
        "code": {"type": "integer", "enum": [200, 202, 500],
                 "description": "200 success; 202 missing or invalid parameters (the message "
                                "names each); 500 internal error"},
        "message": {"type": "string", "example": "请求成功"},
        "data": {"description": "see each operation"},
    },
}


def _responses(data_desc: str) -> dict:
    ok = {"description": f"code 200 ({data_desc}) or 202 (message names the parameters)",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}}
    return {"200": ok, "403": {"description": "caller not in shim.allow"},
            "500": {"description": "code 500: internal error (no details leaked)"}}


def _qr(summary: str, data_desc: str, extra: list[dict] | None = None) -> dict:
    return {"get": {"summary": summary, "parameters": [
        _param("accessNumber", "检查编号 (also accessionNo)"),
        _param("modality", "检查模式 (CT, MR, DX, ...)"), *_HOSPITAL, *(extra or [])],
        "responses": _responses(data_desc)}}


def build(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    login_params = [
        _param("hisUserId", "PACS 登录账号"), _param("type", "1 login, 2 logout"),
        _param("doctorName", "医生姓名 ($-encoded UTF-8: encodeURI with % replaced by $)"),
        *_HOSPITAL, _param("department", "科室名称 ($-encoded)"),
        _param("departmentCode", "科室编码", False),
        _param("doctorSex", "0 未知, 1 男, 2 女, 9 未说明"),
        _param("doctorType", "1 医师, 2 技师, 3 护士"),
        _param("doctorCode", "国家医保人员代码"),
        _param("doctorIdCardNo", "ID number, SM2-encrypted with the cloud's public key: hex or "
                                 "base64, with or without 04, C1C3C2 (login.sm2_mode)"),
        _param("phoneNumber", "手机号", False)]
    lookup_params = [_param("hisUserId", "PACS 登录账号 (must have an open login session)"),
                     _param("idCardNo", "患者身份证号 (PatientID on the platforms)"),
                     _param("patientName", "患者姓名", False), *_HOSPITAL]
    lookup_op = {"summary": "外院检查提醒: the patient's exams at other hospitals (provincial "
                            "and national platforms, QIDO-RS)", "parameters": lookup_params,
                 "responses": _responses("data: {count, exams: [{hospital, studyDate, "
                                         "modality, bodyPart, description, studyInstanceUid, "
                                         "source}], sources}")}
    delete_fields = {k: {"type": "string", "description": d} for k, d in (
        ("patientName", "患者姓名"), ("accessionNo", "检查号"),
        ("hospitalId", "医保医疗机构代码 (default: this gateway's)"),
        ("operateDoctorName", "操作医生姓名"),
        ("operateDateTime", "操作时间 yyyy-MM-dd HH:mm:ss"))}
    delete_schema = {"type": "object", "properties": delete_fields,
                     "required": ["patientName", "accessionNo", "operateDoctorName",
                                  "operateDateTime"]}
    paths: dict[str, Any] = {
        qr_endpoint.QR_URL_PATH: _qr(
            "二维码 URL: the cloud-film link with its SM4 token", "data: the URL"),
        qr_endpoint.QR_CODE_PATH: _qr(
            "二维码图片: the QR code of that link as base64 PNG", "data: base64 PNG",
            [_param("caption", "1: print 扫描查看数字影像 under the code", False)]),
        login.PATH: {"get": {"summary": "医生登录同步 (doctor login/logout sync)",
                             "parameters": login_params,
                             "responses": _responses("data: {hisUserId, sessionId}")}},
        lookup.PATH: {"get": lookup_op, "post": lookup_op},
        deletion.PATH: {"post": {
            "summary": "图像删除更新: remove local copies, delete upstream, re-sync the exam",
            "parameters": [
                _param("X-Dicomgate-Timestamp", "unix seconds (when shim.delete_secret is set)",
                       False, "header"),
                _param("X-Dicomgate-Signature", "hex HMAC-SHA256(delete_secret, timestamp + "
                                                "'\\n' + body) (when shim.delete_secret is set)",
                       False, "header")],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": delete_schema},
                "application/x-www-form-urlencoded": {"schema": delete_schema}}},
            "responses": _responses("data: {deletionId, studies, instances, filesRemoved, "
                                    "repeat}")}},
    }
    paths.update(extra_paths or {})
    return {
        "openapi": "3.0.3",
        "info": {"title": "dicomgate HTTP shim (医保影像云前置机)", "version": __version__,
                 "description": "Endpoints the hospital PACS calls (interface spec 4.3-4.5). "
                                "Answers are UTF-8 JSON {code, message, data}."},
        "paths": paths,
        "components": {"schemas": {"Answer": _ANSWER}},
    }
