"""The code dictionaries of spec section 5, and modality -> imgExamType."""

from __future__ import annotations

from types import MappingProxyType

# field -> {code: label}; labels are the spec's own Chinese names.
DICTIONARIES: MappingProxyType[str, dict[str, str]] = MappingProxyType({
    "sex": {"0": "未知", "1": "男", "2": "女", "9": "未说明性别"},
    "patientType": {"1": "门诊", "2": "住院", "3": "体检", "4": "急诊", "9": "未说明"},
    "examRsltCode": {"1": "阴", "2": "阳", "3": "不确定"},
    "imgExamType": {"1": "X线成像", "2": "CT", "3": "MRI", "4": "超声", "5": "核医学"},
    "prfs": {"11": "公务员", "13": "专业技术人员", "17": "职员", "21": "企业管理人员",
             "24": "工人", "27": "农民", "31": "学生", "37": "现役军人", "51": "自由职业者",
             "54": "个体经营者", "70": "无业人员", "80": "退（离）休人员", "90": "其他"},
    "chargeType": {"01": "全自费", "02": "医保", "03": "其他"},
})

# Other spellings PACS systems use for the same codes (labels, DICOM sex letters).
ALIASES: MappingProxyType[str, dict[str, str]] = MappingProxyType({
    "sex": {"M": "1", "F": "2", "O": "9", "U": "0", "男性": "1", "女性": "2"},
    "examRsltCode": {"阴性": "1", "阳性": "2"},
    "imgExamType": {"X线": "1", "MR": "3", "US": "4", "ECT": "5"},
})

# DICOM modality -> imgExamType (spec 5.4), used when the PACS leaves imgExamType empty.
MODALITY_EXAM_TYPE: MappingProxyType[str, str] = MappingProxyType({
    "CR": "1", "DX": "1", "DR": "1", "MG": "1", "RF": "1", "XA": "1",
    "CT": "2", "MR": "3", "US": "4", "NM": "5", "PT": "5",
})


def lookup(field: str, raw: str) -> str | None:
    """The dictionary code for `raw` (a code, a zero-less code or a label), or None."""
    table = DICTIONARIES[field]
    if raw in table:
        return raw
    if raw.isdigit() and len(raw) < 2 and f"0{raw}" in table:  # chargeType 1 -> "01"
        return f"0{raw}"
    for code, label in table.items():
        if raw == label:
            return code
    return ALIASES.get(field, {}).get(raw.upper() if raw.isascii() else raw)


def expected(field: str) -> str:
    return "one of " + ", ".join(f"{c} {lbl}" for c, lbl in DICTIONARIES[field].items())


def exam_type_for(modality: str | None) -> str | None:
    """imgExamType from a modality such as "CT" or "CT\\SR" (the first one known wins)."""
    if not modality:
        return None
    for part in modality.replace("/", "\\").split("\\"):
        code = MODALITY_EXAM_TYPE.get(part.strip().upper())
        if code:
            return code
    return None
