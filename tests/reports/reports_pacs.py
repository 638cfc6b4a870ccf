"""A PACS-like schema (tables with the site's own column names) and its report view.

The view renames nothing: the gateway maps its columns through [reports.view.columns],
the way a real site's View_Pacs_Text_Info is wired up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")

TABLES = """
CREATE TABLE RIS_EXAM (
    EXAM_NO TEXT, HOSP_CODE TEXT, STUDY_UID TEXT, PAT_ID TEXT, PAT_NAME TEXT, ID_NO TEXT,
    PAT_SEX TEXT, PAT_AGE TEXT, PAT_TYPE TEXT, FEE_TYPE TEXT, MODALITY TEXT, EXAM_CLASS TEXT,
    BODY_PART TEXT, ITEM_NAME TEXT, EXAM_DATE {ts}, IMAGE_URL TEXT
);
CREATE TABLE RIS_REPORT (
    EXAM_NO TEXT, FINDINGS TEXT, IMPRESSION TEXT, RESULT_CODE TEXT, REPORTER TEXT,
    AUDITOR TEXT, REPORT_DATE {ts}, AUDIT_DATE {ts}, MODIFY_DATE {ts}
);
CREATE TABLE RIS_FEE (EXAM_NO TEXT, REFUND_DATE {ts});
"""

VIEW = """
CREATE VIEW View_Pacs_Text_Info AS
SELECT {acc} AS EXAM_NO, e.HOSP_CODE, e.STUDY_UID, e.PAT_ID, e.PAT_NAME, e.ID_NO, e.PAT_SEX,
       e.PAT_AGE, e.PAT_TYPE, e.FEE_TYPE, e.MODALITY, e.EXAM_CLASS, e.BODY_PART, e.ITEM_NAME,
       e.EXAM_DATE, e.IMAGE_URL, r.FINDINGS, r.IMPRESSION, r.RESULT_CODE, r.REPORTER,
       r.AUDITOR, r.REPORT_DATE, r.AUDIT_DATE, r.MODIFY_DATE, f.REFUND_DATE
FROM RIS_EXAM e
LEFT JOIN RIS_REPORT r ON r.EXAM_NO = e.EXAM_NO
LEFT JOIN RIS_FEE f ON f.EXAM_NO = e.EXAM_NO
"""

# canonical field = the view's column
COLUMNS = {
    "accessionNo": "EXAM_NO", "hospitalId": "HOSP_CODE", "studyInstanceUid": "STUDY_UID",
    "patientId": "PAT_ID", "patientName": "PAT_NAME", "idCardNo": "ID_NO", "sex": "PAT_SEX",
    "age": "PAT_AGE", "patientType": "PAT_TYPE", "chargeType": "FEE_TYPE",
    "modality": "MODALITY", "imgExamType": "EXAM_CLASS", "examPart": "BODY_PART",
    "examItemName": "ITEM_NAME", "examTime": "EXAM_DATE", "imagePath": "IMAGE_URL",
    "examFindings": "FINDINGS", "examConclusion": "IMPRESSION", "examRsltCode": "RESULT_CODE",
    "reportDoctor": "REPORTER", "auditDoctor": "AUDITOR", "reportTime": "REPORT_DATE",
    "auditTime": "AUDIT_DATE", "modifyTime": "MODIFY_DATE", "refundTime": "REFUND_DATE",
}

VALID_ID = "11010519491231002X"  # GB 11643's own example


def ago(minutes: float) -> dt.datetime:
    """A naive PACS local time `minutes` before now."""
    return (dt.datetime.now(TZ) - dt.timedelta(minutes=minutes)).replace(tzinfo=None,
                                                                         microsecond=0)


def ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Exam:
    acc: str
    minutes_ago: float = 30
    name: str = "张三"
    sex: str | None = "1"
    modality: str | None = "CT"
    exam_class: str | None = None
    study_uid: str | None = None
    id_no: str | None = VALID_ID
    fee: str | None = "2"
    image_url: str | None = None

    def values(self) -> tuple:
        return (self.acc, "H33010200001", self.study_uid, f"P{self.acc}", self.name, self.id_no,
                self.sex, "45岁", "1", self.fee, self.modality, self.exam_class, "CT001",
                "胸部CT平扫", ts(ago(self.minutes_ago)), self.image_url)


def insert_exam_sql(mark: str = "?") -> str:
    return f"INSERT INTO RIS_EXAM VALUES ({', '.join([mark] * 16)})"


def insert_report_sql(mark: str = "?") -> str:
    return f"INSERT INTO RIS_REPORT VALUES ({', '.join([mark] * 9)})"


def report_values(acc: str, conclusion: str, minutes_ago: float, modified: float | None = None
                  ) -> tuple:
    return (acc, "双肺纹理清晰。", conclusion, "1", "李医生", "王主任",
            ts(ago(minutes_ago + 1)), ts(ago(minutes_ago)),
            ts(ago(modified)) if modified is not None else None)
