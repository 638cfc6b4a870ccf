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


def test_uncaught_thread_exceptions_and_library_sentences_are_one_json_line_each():
    """`journalctl -o cat | jq` must parse every line: tracebacks and library sentences
    become fields of events with stable names."""
    import threading

    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    try:
        t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
        t.start()
        t.join()
        logging.getLogger("apscheduler.scheduler").warning(
            'Execution of job "pacs.echo" skipped: maximum number of running instances')
        try:
            raise OSError("socket closed")
        except OSError:
            logging.getLogger("waitress.channel").exception("Exception while serving /x")
    finally:
        logs.configure("info", "json")
    lines = buf.getvalue().splitlines()
    events = [json.loads(line) for line in lines]  # raises on any non-JSON line
    assert [e["event"] for e in events] == ["thread.crashed", "lib.apscheduler",
                                            "lib.waitress"]
    crashed, sched, waitress = events
    assert crashed["thread"] == "worker-x" and crashed["level"] == "error"
    assert "ZeroDivisionError" in crashed["error"] and "Traceback" in crashed["traceback"]
    assert sched["message"].startswith("Execution of job") and sched["level"] == "warning"
    assert "OSError: socket closed" in waitress["exception"]
