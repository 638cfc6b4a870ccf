"""The canonical exam record's field names (DESIGN.md, "Canonical exam record").

A leaf module: the reports feature normalises rows into this record, the state store keeps
it, and the config names these fields under [reports.view.columns]; all three import it
from here, so the schema has one owner below all of them.
"""

CANONICAL_FIELDS = (
    "accessionNo", "studyInstanceUid", "hospitalId", "patientId", "patientName", "idCardNo",
    "sex", "age", "birthDate", "patientType", "prfs", "chargeType", "mdtrtId", "psnNo",
    "modality", "imgExamType", "examPart", "examPartName", "examItemName", "applyDept",
    "applyDoctor", "examTime", "refundTime", "auditTime", "modifyTime", "reportTime",
    "examFindings", "examConclusion", "examRsltCode", "reportDoctor", "auditDoctor", "imagePath",
)
# The time fields: [reports.view.time_formats] may name a format for each.
TIME_FIELDS = ("examTime", "refundTime", "auditTime", "modifyTime", "reportTime")
