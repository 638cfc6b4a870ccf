"""The canonical exam record: dictionaries, times, text encodings, ID numbers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomgate import idcard
from dicomgate.reports.events import AUDITED, MODIFIED, PERFORMED, REFUNDED
from dicomgate.reports.record import MAX_LENGTH, TIME_FUTURE, TIME_PAST, Rules, normalise

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


EXAM = {"patientName": "张三", "modality": "CT", "examTime": "2024-05-01 10:00:00"}


def test_required_fields_per_event_type():
    assert normalise({"accessionNo": "A", **EXAM}, RULES, [PERFORMED]).ok
    n = normalise({"accessionNo": "A", **EXAM, "auditTime": "2024-05-01 10:00:00"}, RULES,
                  [AUDITED])
    assert n.reason == ("examConclusion: missing (expected report text in examFindings or "
                        "examConclusion; required for type 3)")
    n = normalise({"accessionNo": "  ", "examTime": None}, RULES, [PERFORMED])
    assert [p.field for p in n.problems] == ["accessionNo", "examTime", "patientName",
                                             "modality"]
    # a refund needs only its key and time
    assert normalise({"accessionNo": "A", "refundTime": "2024-05-01 10:00:00"}, RULES,
                     [REFUNDED]).ok


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.sampled_from(["patientName", "modality", "examTime"]), st.sampled_from(
    [PERFORMED, AUDITED, MODIFIED]))
def test_an_exam_row_without_patient_modality_or_time_is_quarantined(missing, event):
    row = {"accessionNo": "A", **EXAM, "examConclusion": "未见异常。",
           "auditTime": "2024-05-01 10:10:00", "modifyTime": "2024-05-01 10:20:00"}
    row[missing] = None
    n = normalise(row, RULES, [event])
    assert [str(p) for p in n.problems] == [
        f"{missing}: missing (expected a value; required for type {event.code} "
        f"({event.name}))"]


def test_foreign_hospital_is_a_problem_group_codes_are_not():
    group = Rules("H1", ZoneInfo("Asia/Shanghai"), group_hospital_ids=("H2",))
    row = {"accessionNo": "A", **EXAM}
    assert normalise({**row, "hospitalId": "H2"}, group, [PERFORMED]).ok
    assert normalise(row, group, [PERFORMED]).record["hospitalId"] == "H1"
    n = normalise({**row, "hospitalId": "H99999999999"}, group, [PERFORMED])
    assert n.reason == ("hospitalId: 'H99999999999' (expected one of the hospitals this "
                        "gateway serves: H1, H2 (gateway.hospital_id, "
                        "gateway.group_hospital_ids))")


@settings(max_examples=80, derandomize=True, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
def test_times_outside_a_window_around_now_are_refused(value):
    now = dt.datetime.now(RULES.timezone).replace(tzinfo=None)
    n = normalise({"accessionNo": "A", **EXAM, "examTime": value}, RULES, [PERFORMED])
    sane = now - TIME_PAST + dt.timedelta(minutes=1) <= value <= now + TIME_FUTURE - \
        dt.timedelta(minutes=1)
    insane = value < now - TIME_PAST - dt.timedelta(minutes=1) or \
        value > now + TIME_FUTURE + dt.timedelta(minutes=1)
    if sane:
        assert n.ok, n.reason
    elif insane:
        assert [p.field for p in n.problems] == ["examTime"]
        assert "expected a time between" in n.reason and n.record["examTime"] is None


def test_the_far_future_placeholder_is_refused():
    n = normalise({"accessionNo": "A", **EXAM, "examTime": "9999-12-31 23:59:59"}, RULES,
                  [PERFORMED])
    assert n.problems[0].field == "examTime" and "9999-12-31T23:59:59+08:00" in n.reason


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.sampled_from(sorted(MAX_LENGTH)), st.integers(min_value=-3, max_value=3),
       st.sampled_from(["a", "肺", "𠮷"]))
def test_lengths_the_cloud_accepts_are_enforced_never_cut(name, delta, char):
    limit = MAX_LENGTH[name]
    value = char * (limit + delta)
    row = {"accessionNo": "A", **EXAM, name: value}
    n = normalise(row, RULES, [])
    too_long = [p for p in n.problems if p.value == f"<{limit + delta} characters>"]
    if delta > 0:
        assert too_long and too_long[0].field == name
        assert f"at most {limit} characters" in too_long[0].expected
        assert n.record[name] is None  # nothing of it kept, nothing cut
    else:
        assert not too_long
        upper = name in ("idCardNo", "modality")
        assert n.record[name] == (value.upper() if upper else value)


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
