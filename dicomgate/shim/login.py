"""Doctor login sync (spec 4.4.3.1): `GET /hrball/?hisUserId=...&type=1|2&...`.

The same parameter string also reaches the plugin as a command line or a `WYHT://` URL;
`decode_login` reads all three (the CLI's `dicomgate login parse` uses it too). The doctor's
ID number is SM2-encrypted by the PACS: it is decrypted, its check digit verified, and only a
salted hash is kept. It is never logged, stored or answered in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass, field

import structlog

from ..config.model import LoginConfig
from ..idcard import problem as id_problem
from ..privacy import mask_name
from ..smcrypto import GmError, Sm2Decryptor, decode_text
from ..state.sessions import SessionStore
from .http import OK, Request, Response, reply
from .inputs import body_text
from .login_string import EncodingError, dollar_decode, parse_login_string
from .params import Params
from .schema import Schema, read, text

log = structlog.get_logger("dicomgate.shim.login")

PATH = "/hrball/"

LOGIN_TYPES = {"1": "login", "2": "logout"}
SEX = {"0": "未知", "1": "男", "2": "女", "9": "未说明性别"}
DOCTOR_TYPES = {"1": "医师", "2": "技师", "3": "护士"}
DETAIL_FIELDS = ("doctorName", "department", "departmentCode", "doctorSex", "doctorType",
                 "doctorCode", "phoneNumber")


class LoginQuery(Schema):
    """The login string's fields, after $-decoding (type 2, logout, needs only the first
    three)."""
    hisUserId: str = text("PACS 登录账号")
    type: str = text("1 login, 2 logout", 1)
    hospitalId: str = text("医保医疗机构代码 (default: this gateway's gateway.hospital_id)",
                           required=False)
    doctorName: str = text("医生姓名 (login)", required=False)
    department: str = text("科室名称 (login)", 100, required=False)
    departmentCode: str = text("科室编码", required=False)
    doctorSex: str = text("0 未知, 1 男, 2 女, 9 未说明 (login)", 1, required=False)
    doctorType: str = text("1 医师, 2 技师, 3 护士 (login)", 1, required=False)
    doctorCode: str = text("国家医保人员代码 (login)", required=False)
    doctorIdCardNo: str = text("ID number, SM2-encrypted with the cloud's public key: hex or "
                               "base64, with or without 04, C1C3C2 (login.sm2_mode) (login)",
                               4096, required=False)
    phoneNumber: str = text("手机号", 20, required=False)


@dataclass
class LoginFields:
    his_user_id: str
    type: str
    hospital_id: str
    detail: dict[str, str] = field(default_factory=dict)  # doctorName, department, ...
    id_card_no: str | None = None  # decrypted; only ever hashed or masked
    sm2_mode: str | None = None  # the byte order the ciphertext was found in


def decode_values(raw: dict[str, str], p: Params) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        try:
            out[key] = dollar_decode(value)
        except EncodingError as exc:
            p.add(f"{key} invalid: {exc}")
    return out


def decode_login(text: str, default_hospital: str, decryptor: Sm2Decryptor | None,
                 served: Collection[str] | None = None) -> LoginFields:
    """Parse, decode and check a login string; raises ParamError naming every problem
    (ForeignHospital when it names a hospital outside `served`)."""
    raw = parse_login_string(text)
    p = Params({}, default_hospital, served)
    values, problems = read(LoginQuery, decode_values(raw, p).items())
    p.raw = values
    p.problems += problems
    his_user_id = p.required("hisUserId", "PACS 登录账号")
    kind = p.choice("type", LOGIN_TYPES)
    hospital = p.hospital()
    fields = LoginFields(his_user_id, kind, hospital)
    if kind != "1":  # logout needs only the account
        p.done()
        return fields
    fields.detail = {
        "doctorName": p.required("doctorName", "医生姓名"),
        "department": p.required("department", "科室名称", 100),
        "departmentCode": p.optional("departmentCode", "科室编码"),
        "doctorSex": p.choice("doctorSex", SEX),
        "doctorType": p.choice("doctorType", DOCTOR_TYPES),
        "doctorCode": p.required("doctorCode", "国家医保人员代码"),
        "phoneNumber": p.optional("phoneNumber", "手机号", 20),
    }
    cipher = p.required("doctorIdCardNo", "SM2 加密的身份证号, hex or base64", 4096)
    if cipher and decryptor is not None:
        fields.id_card_no, fields.sm2_mode = _decrypt_id(cipher, decryptor, p)
    p.done()
    return fields


def _decrypt_id(cipher: str, decryptor: Sm2Decryptor, p: Params) -> tuple[str | None, str | None]:
    try:
        plain, mode = decryptor.decrypt(decode_text(cipher))
        value = plain.decode("utf-8").strip().upper()
    except (GmError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, GmError) else "decrypts to non-text bytes"
        p.add(f"doctorIdCardNo invalid: {reason} (expected the ID number SM2-encrypted with "
              f"the cloud's public key, {decryptor.mode})")
        return None, None
    problem = id_problem(value)
    if problem:
        p.add(f"doctorIdCardNo invalid: decrypted value is not a resident ID number: {problem}")
        return None, None
    return value, mode


def id_hash(salt: bytes, id_card_no: str) -> str:
    return hmac.new(salt, id_card_no.encode("ascii"), hashlib.sha256).hexdigest()


class LoginEndpoint:
    def __init__(self, config: LoginConfig, sessions: SessionStore, default_hospital: str,
                 served: Collection[str] | None = None):
        self.config = config
        self.sessions = sessions
        self.default_hospital = default_hospital
        self.served = served if served is not None else (default_hospital,)
        self.decryptor = Sm2Decryptor(config.sm2_private_key.reveal(), config.sm2_mode)
        self._salt: bytes | None = None

    def __call__(self, req: Request) -> Response:
        text = req.query_string or body_text(req.body)
        fields = decode_login(text, self.default_hospital, self.decryptor, self.served)
        req.context.update(his_user_id=fields.his_user_id, login_type=fields.type)
        if fields.type == "2":
            closed = self.sessions.close(fields.hospital_id, fields.his_user_id,
                                         {"client": req.client})
            log.info("doctor.logout", his_user_id=fields.his_user_id, closed=closed)
            message = "请求成功" if closed else "请求成功（该账号没有已登录的会话）"
            return reply(OK, message, {"hisUserId": fields.his_user_id, "closed": closed})
        if fields.sm2_mode and fields.sm2_mode != self.config.sm2_mode:
            log.warning("doctor.sm2_mode_mismatch", configured=self.config.sm2_mode,
                        found=fields.sm2_mode, hint="set login.sm2_mode to match the PACS")
        self._salt = self._salt or self.sessions.salt()
        hashed = id_hash(self._salt, fields.id_card_no or "")
        audit = {"client": req.client, "doctorName": mask_name(fields.detail["doctorName"]),
                 "department": fields.detail["department"],
                 "doctorType": fields.detail["doctorType"],
                 "doctorCode": fields.detail["doctorCode"]}
        session = self.sessions.open(fields.hospital_id, fields.his_user_id, fields.detail,
                                     hashed, self.config.session_ttl, audit)
        log.info("doctor.login", his_user_id=fields.his_user_id, session=session,
                 hospital_id=fields.hospital_id, doctor_type=fields.detail["doctorType"])
        return reply(OK, None, {"hisUserId": fields.his_user_id, "sessionId": session,
                                "expiresIn": int(self.config.session_ttl)})
