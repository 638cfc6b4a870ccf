"""Mode 1 over unixODBC + MariaDB Connector/ODBC against a MariaDB server the tests start."""

from __future__ import annotations

import json

import pytest
from reports_mariadb import MariaPacs
from reports_pacs import Exam, insert_exam_sql, insert_report_sql, report_values
from reports_support import open_store, reports_config, view_reports

LONG = ("左肺下叶见结节影边界清楚大小约厘米建议随访复查𠮷野家双肺纹理清晰" * 10)[:200]


def sync(cli, config, *extra) -> tuple[int, dict[int, dict], str]:
    code, out, err = cli(config, "sync", "--once", "--json", *extra)
    assert out, err
    return code, {r["type"]: r for r in json.loads(out)}, err


@pytest.mark.parametrize("charset", ["utf8mb4", "gbk"])
def test_long_text_arrives_whole(tmp_path, cli, mariadb, charset):
    pacs = MariaPacs(mariadb, charset, text="TEXT")
    text = LONG if charset == "utf8mb4" else LONG.replace("𠮷", "吉")
    pacs.insert(insert_exam_sql(), Exam("M1").values())
    pacs.insert(insert_report_sql(), report_values("M1", text, 15))
    config = reports_config(tmp_path, view_reports(pacs.connection(),
                            'encoding = "gbk"' if charset == "gbk" else ""))
    code, res, err = sync(cli, config)
    assert code == 0, err
    exam = open_store(config).exams.get("H33010200001", "M1")
    assert exam.record["examConclusion"] == text
