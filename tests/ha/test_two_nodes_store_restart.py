"""Two `dicomgate run` nodes against one PostgreSQL: the store restarted mid-work, they
refuse what they cannot record, say so in /healthz and carry on by themselves."""

from __future__ import annotations

import subprocess
import time

from ha_harness import delivered, make_exams, wait
from ha_harness import load as _load


def _storescu(node, tmp_path) -> str:
    """One instance sent to the node's Portal AET as the PACS would; dcmtk's verbose log."""
    _exam, data = make_exams(1, start=900)[0]
    f = tmp_path / "one.dcm"
    f.write_bytes(data[0])
    r = subprocess.run(["storescu", "-v", "-aet", "HOSPPACS", "-aec", node.aet, "127.0.0.1",
                        str(node.dicom_port), str(f)], capture_output=True, text=True,
                       timeout=60)
    return r.stdout + r.stderr


def test_postgresql_restarted_mid_work_loses_nothing(nodes, pg, pacs, cloud, api, view_db,
                                                     tmp_path):
    exams = _load(pacs, view_db, 8)
    a, b = nodes["gw-a"].start(), nodes["gw-b"].start()
    wait(lambda: delivered(cloud, api, exams), 120, "the first study delivered", a, b)
    pg.stop("fast")
    try:
        def says_store_down() -> bool:
            h = a.health()
            return h["status"] == "unhealthy" and "unreachable" in h["checks"]["state store"]
        wait(says_store_down, 30, "gw-a's /healthz to name the unreachable store", a)
        check = a.health()["checks"]["state store"]
        assert f"127.0.0.1:{pg.port}" in check and "postgresql://" in check
        refused = _storescu(a, tmp_path)  # an image the store cannot record: refused
        assert "Refused: OutOfResources" in refused, refused  # 0xA700
        time.sleep(5)  # work is attempted and paused meanwhile
    finally:
        pg.start()
    wait(lambda: len(delivered(cloud, api, exams)) == len(exams), 300,
         "every study and report delivered after the restart", a, b)
    wait(lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 60,
         "both nodes healthy again by themselves", a, b)
    assert a.proc.poll() is None and b.proc.poll() is None  # nobody restarted them
