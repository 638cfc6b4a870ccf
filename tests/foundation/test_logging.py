"""Personal data never reaches a log line in clear."""

from __future__ import annotations

import io
import json
import logging

import structlog

from dicomgate import logs

NAME = "欧阳娜娜"
ID_CARD = "11010519491231002X"
PHONE = "13812345678"


def capture(fn) -> list[dict]:
    buf = io.StringIO()
    logs.configure("debug", "json", stream=buf)
    try:
        fn()
    finally:
        logs.configure("info", "json")
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_names_id_numbers_and_phones_are_masked():
    def emit():
        log = structlog.get_logger("test")
        log.info("exam.synced", patientName=NAME, idCardNo=ID_CARD, phoneNumber=PHONE,
                 record={"doctorName": "张医生", "doctorIdCardNo": ID_CARD},
                 error=f"row for {ID_CARD} / {PHONE} refused",
                 study_uid="1.2.826.0.1.3680043.8.498.110105194912310021")

    (event,) = capture(emit)
    text = json.dumps(event, ensure_ascii=False)
    assert NAME not in text and ID_CARD not in text and PHONE not in text
    assert "张医生" not in text
    assert event["patientName"] == "欧***"
    assert event["idCardNo"] == "110105********002X"
    assert event["phoneNumber"].endswith("5678") and event["phoneNumber"].count("*") == 7
    assert event["event"] == "exam.synced" and event["level"] == "info"
    # UIDs with long digit runs are left alone
    assert event["study_uid"] == "1.2.826.0.1.3680043.8.498.110105194912310021"


def test_third_party_stdlib_logs_are_json_and_masked():
    def emit():
        logging.getLogger("pynetdicom.test").warning("patient %s with id %s", NAME, ID_CARD)

    (event,) = capture(emit)
    assert ID_CARD not in json.dumps(event, ensure_ascii=False)
    assert event["level"] == "warning"
