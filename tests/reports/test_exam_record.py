"""The canonical exam record: dictionaries, times, text encodings, ID numbers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from dicomgate import idcard
from dicomgate.reports.events import AUDITED, PERFORMED
from dicomgate.reports.record import Rules, normalise

RULES = Rules("H1", ZoneInfo("Asia/Shanghai"))


def test_codes_normalised_and_checked():
    n = normalise({"accessionNo": "A", "sex": "女", "chargeType": 1, "prfs": 80.0,
                   "patientType": " 4 ", "examRsltCode": "阳性"}, RULES)
    assert n.ok
    assert (n.record["sex"], n.record["chargeType"], n.record["prfs"],
            n.record["patientType"], n.record["examRsltCode"]) == ("2", "01", "80", "4", "2")
    bad = normalise({"accessionNo": "A", "prfs": "12", "imgExamType": "6"}, RULES)
    assert [p.field for p in bad.problems] == ["imgExamType", "prfs"]
    assert "prfs: '12' (expected one of 11 公务员" in bad.reason


def test_exam_type_derived_from_modality():
    expect = {"CR": "1", "DX": "1", "DR": "1", "MG": "1", "RF": "1", "XA": "1", "CT": "2",
              "MR": "3", "US": "4", "NM": "5", "PT": "5", "ct\\sr": "2"}
    for modality, code in expect.items():
        assert normalise({"accessionNo": "A", "modality": modality}, RULES) \
            .record["imgExamType"] == code
    given_type = normalise({"accessionNo": "A", "modality": "CT", "imgExamType": "3"}, RULES)
    assert given_type.record["imgExamType"] == "3"  # the PACS's own value wins
    es = normalise({"accessionNo": "A", "modality": "ES"}, RULES)
    assert es.ok and es.record["imgExamType"] is None and "does not imply" in es.warnings[0]


def test_times_local_unless_offset():
    n = normalise({"accessionNo": "A", "examTime": "2024-05-01 10:00:00",
                   "auditTime": "2024-05-01T02:00:00Z", "modifyTime": "20240501103000",
                   "reportTime": dt.datetime(2024, 5, 1, 9, 30, 15, 500),
                   "refundTime": "2024/05/01 11:00:00+09:00", "birthDate": "19800102"}, RULES, [])
    assert n.ok, n.reason
    r = n.record
    assert r["examTime"] == "2024-05-01T10:00:00+08:00"
    assert r["auditTime"] == "2024-05-01T02:00:00+00:00"
    assert r["modifyTime"] == "2024-05-01T10:30:00+08:00"
    assert r["reportTime"] == "2024-05-01T09:30:15+08:00"
    assert r["refundTime"] == "2024-05-01T11:00:00+09:00"
    assert r["birthDate"] == "1980-01-02"


def test_required_fields_per_event_type():
    assert normalise({"accessionNo": "A", "examTime": "2024-05-01 10:00:00"}, RULES,
                     [PERFORMED]).ok
    n = normalise({"accessionNo": "A", "auditTime": "2024-05-01 10:00:00"}, RULES, [AUDITED])
    assert n.reason == ("examConclusion: missing (expected report text in examFindings or "
                        "examConclusion; required for type 3)")
    n = normalise({"accessionNo": "  ", "examTime": None}, RULES, [PERFORMED])
    assert [p.field for p in n.problems] == ["accessionNo", "examTime"]


def test_bytes_decoded_with_the_view_encoding_or_quarantined():
    gbk = Rules("H1", ZoneInfo("Asia/Shanghai"), encoding="gbk")
    n = normalise({"accessionNo": b"A1", "patientName": "王五".encode("gbk")}, gbk)
    assert n.ok and n.record["patientName"] == "王五"
    n = normalise({"accessionNo": b"A1", "examFindings": "肝脏形态正常".encode()}, RULES)
    assert n.ok and n.record["examFindings"] == "肝脏形态正常"  # UTF-8 when unset
    # GBK bytes with no encoding set: not guessed, quarantined with what to set
    n = normalise({"accessionNo": "A1", "patientName": "王五".encode("gbk")}, RULES)
    assert not n.ok and n.problems[0].field == "patientName"
    assert "reports.view.encoding" in n.reason and "'<4 bytes, not utf-8 at byte 0>'" in n.reason


def test_control_characters_stripped_with_a_warning():
    n = normalise({"accessionNo": "A1", "patientName": "A\x00B",
                   "examFindings": "第一行\r\n第二行\x07"}, RULES)
    assert n.ok and n.record["patientName"] == "AB"
    assert n.record["examFindings"] == "第一行\r\n第二行"  # line breaks belong in text
    assert n.warnings == ["patientName: control characters removed (U+0000)",
                          "examFindings: control characters removed (U+0007)"]


def test_image_urls_required_in_http_image_mode():
    rules = Rules("H1", ZoneInfo("Asia/Shanghai"), image_urls_required=True)
    n = normalise({"accessionNo": "A", "imagePath": r"\\pacs\share\1.dcm"}, rules)
    assert n.problems[0].field == "imagePath"
    assert normalise({"accessionNo": "A", "imagePath": r"\\pacs\share\1.dcm"}, RULES).ok


def test_id_number_flagged_not_refused():
    n = normalise({"accessionNo": "A", "idCardNo": "110105194912310021"}, RULES)
    assert n.ok and n.warnings == ["idCardNo: check digit wrong (GB 11643): mistyped number?"]
    assert "110105194912310021" not in " ".join(n.warnings)
    assert normalise({"accessionNo": "A", "idCardNo": "11010519491231002x"}, RULES) \
        .record["idCardNo"] == "11010519491231002X"
    assert idcard.problem("110105491231002", allow_legacy15=True) is None  # first generation


@given(st.text(alphabet="0123456789", min_size=6, max_size=6),
       st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
       st.text(alphabet="0123456789", min_size=3, max_size=3))
def test_check_digit_roundtrip(region, birth, serial):
    first17 = f"{region}{birth:%Y%m%d}{serial}"
    good = first17 + idcard.check_digit(first17)
    assert idcard.problem(good) is None
    wrong = next(c for c in "0123456789X" if c != good[-1])
    assert idcard.problem(first17 + wrong) is not None
