"""A sandbox hospital: Orthanc as the PACS, loaded with studies, and a SQLite database
with `View_Pacs_Text_Info` that dicomgate reads through unixODBC (driver `SQLite3`)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..idcard import check_digit
from .orthanc import Orthanc
from .studies import Patient, StudySpec, bundled_instances, ct_instances, sop_uid_of

VIEW_COLUMNS = (
    "accessionNo", "studyInstanceUid", "hospitalId", "patientId", "patientName", "idCardNo",
    "sex", "age", "birthDate", "patientType", "chargeType", "modality", "imgExamType",
    "examPart", "examPartName", "examItemName", "applyDept", "applyDoctor", "examTime",
    "refundTime", "auditTime", "modifyTime", "reportTime", "examFindings", "examConclusion",
    "examRsltCode", "reportDoctor", "auditDoctor", "imagePath",
)


@dataclass
class DemoExam:
    spec: StudySpec
    instances: list[bytes]
    row: dict[str, str | None]
    sop_uids: set[str] = field(default_factory=set)


def demo_exams(hospital_id: str, now: dt.datetime) -> list[DemoExam]:
    def t(minutes: int) -> str:
        return (now - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")

    people = [
        ("P1001", "Zhang^San=张三", "张三", "ISO_IR 192", "33010219800101123", "1", "M"),
        ("P1002", "Li^Si=李四", "李四", "GB18030", "33010219920315234", "2", "F"),
        ("P1003", "Wang^Wu=王五", "王五", "ISO_IR 192", "33010219751230345", "1", "M"),
    ]
    exams = []
    for n, (pid, dicom_name, name, charset, id17, sex, dsex) in enumerate(people, 1):
        acc = f"DEMO{now:%Y%m%d}{n:03d}"
        modality = ("CT", "MR", "US")[n - 1]
        spec = StudySpec(accession=acc, modality=modality,
                         patient=Patient(pid, dicom_name, "19800101", dsex, charset),
                         description=("胸部CT平扫", "头颅MR平扫", "腹部彩超")[n - 1])
        if n == 1:
            instances = ct_instances(spec, series=2, per_series=6, rows=128, cols=128, seed=n)
        elif n == 2:
            instances = bundled_instances(spec)
        else:
            instances = bundled_instances(spec, ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm",
                                                 "JPEG2000.dcm"))
        row = {
            "accessionNo": acc, "studyInstanceUid": spec.study_uid, "hospitalId": hospital_id,
            "patientId": pid, "patientName": name, "idCardNo": id17 + check_digit(id17),
            "sex": sex, "age": "45", "birthDate": "1980-01-01", "patientType": "1",
            "chargeType": "02", "modality": modality, "imgExamType": None,
            "examPart": f"0{n}", "examPartName": ("胸部", "头部", "腹部")[n - 1],
            "examItemName": spec.description, "applyDept": "呼吸内科", "applyDoctor": "赵医生",
            "examTime": t(40), "refundTime": None, "auditTime": t(10), "modifyTime": None,
            "reportTime": t(15), "examFindings": "双肺纹理清晰，未见明显实质性病变。",
            "examConclusion": "未见明显异常。", "examRsltCode": "1",
            "reportDoctor": "钱医生", "auditDoctor": "孙医生", "imagePath": None,
        }
        exams.append(DemoExam(spec, instances, row, {sop_uid_of(b) for b in instances}))
    return exams


def create_view_db(path: Path, rows: list[dict[str, str | None]]) -> str:
    """Write the PACS tables and the view; returns the ODBC connection string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    cols = ", ".join(f'"{c}" TEXT' for c in VIEW_COLUMNS)
    db.execute(f"CREATE TABLE IF NOT EXISTS pacs_exam_report ({cols})")
    db.execute("CREATE VIEW IF NOT EXISTS View_Pacs_Text_Info AS SELECT * FROM pacs_exam_report")
    marks = ", ".join("?" * len(VIEW_COLUMNS))
    db.executemany(f"INSERT INTO pacs_exam_report VALUES ({marks})",
                   [tuple(r.get(c) for c in VIEW_COLUMNS) for r in rows])
    db.commit()
    db.close()
    return f"Driver=SQLite3;Database={path}"


def load_pacs(pacs: Orthanc, exams: list[DemoExam]) -> int:
    n = 0
    for exam in exams:
        for data in exam.instances:
            pacs.upload(data)
            n += 1
    return n
