"""check-config: the shipped example passes; each kind of bad value names its key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomgate.config import ConfigError, Secret, load
from tests.support import run_cli, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "dicomgate.toml"

BASE = """
[gateway]
hospital_id = "H1"
state_dir = "/tmp/dicomgate-test-unused"
[dicom]
ae_title = "DICOMGATE"
"""


def test_example_config_passes_check_config():
    r = run_cli("check-config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"config OK: {EXAMPLE}")
    assert "on   report polling" in r.stdout


def test_example_config_loads_typed_values():
    cfg = load(EXAMPLE)
    assert cfg.dicom.min_free_disk == 5 * 1024**3
    assert cfg.pacs.echo_interval == 60.0
    assert cfg.pacs.max_associations == 2
    assert cfg.reports.overlap == 600.0
    assert cfg.upstream.retention == 7 * 86400
    assert isinstance(cfg.qr.sm4_key, Secret)
    assert "0123456789abcdef" not in repr(cfg.qr)  # secrets never print


@pytest.mark.parametrize("extra, key", [
    ('[pacs]\nae_title = "THIS_AE_TITLE_IS_TOO_LONG"\nhost = "h"', "pacs.ae_title"),
    ('[pacs]\nae_title = "BAD\\\\AE"\nhost = "h"', "pacs.ae_title"),
    ('[pacs]\nae_title = "P"\nhost = "h"\nport = 70000', "pacs.port"),
    ('[pacs]\nae_title = "P"\nhost = "h"\nport = "104"', "pacs.port"),
    ('[pacs]\nae_title = "P"\nhost = "h"\necho_interval = "soon"', "pacs.echo_interval"),
    ('[pacs]\nae_title = "P"\nhost = "h"\nmax_associations = 0', "pacs.max_associations"),
    ('[shim]\nallow = ["10.0.0.0/33"]', "shim.allow[0]"),
    # the waitress front is bench-only (bench/waitress_front.py), not a product setting
    ('[shim]\nallow = ["127.0.0.1/32"]\nserver = "waitress"', "shim.server"),
    ('[upstream]\ndicomweb_url = "ftp://x"\napi_url = "https://c/api"', "upstream.dicomweb_url"),
    ('[upstream]\ndicomweb_url = "https://c/dw"\napi_url = "https://c/api"\nauth = "bearer"',
     "upstream.token"),
    ('[qr]\nfilm_url = "http://x/y"\nsm4_key_file = "/nonexistent/key"', "qr.sm4_key_file"),
    ('[qr]\nfilm_url = "http://x/y"\nsm4_key = "abc"', "qr.sm4_key"),
    ('[login]\nsm2_private_key_env = "DICOMGATE_NO_SUCH_VAR"', "login.sm2_private_key_env"),
    ('[reports]\nsource = "view"', "reports.view"),
    ('[reports]\nsource = "ftp"\n[reports.http]\nurl = "http://p/api"', "reports.source"),
    ('[tasks]\nworkers = 0', "tasks.workers"),
    ('[gateway2]\nx = 1', "gateway2"),
])
def test_each_bad_value_names_its_key(tmp_path, extra, key):
    cfg = write_config(tmp_path / "bad.toml", BASE + extra)
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert any(line.startswith(f"{key}: ") for line in r.stderr.splitlines()), r.stderr
    assert "Traceback" not in r.stderr


def test_every_problem_is_listed_at_once(tmp_path):
    cfg = write_config(tmp_path / "bad.toml", """
[gateway]
hospital_id = 7
colour = "red"
[dicom]
ae_title = "WAY_TOO_LONG_FOR_AN_AE"
port = 0
min_free_disk = "lots"
""")
    with pytest.raises(ConfigError) as err:
        load(cfg)
    keys = {line.split(":")[0] for line in err.value.lines}
    assert keys == {"gateway.hospital_id", "gateway.colour", "dicom.ae_title", "dicom.port",
                    "dicom.min_free_disk"}
    for line in err.value.lines:  # <key>: <what is wrong> (<what is expected>)
        assert line.endswith(")") and " (" in line


def test_toml_syntax_error_gives_line_and_exit_2(tmp_path):
    cfg = write_config(tmp_path / "bad.toml", BASE + "\n[pacs\nhost = 1\n")
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2
    assert "line 8" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_is_exit_2(tmp_path):
    r = run_cli("check-config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "file not found" in r.stderr


def test_missing_required_sections(tmp_path):
    cfg = write_config(tmp_path / "empty.toml", "")
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2
    assert "gateway: section missing" in r.stderr and "dicom: section missing" in r.stderr


def test_secret_from_env_and_file(tmp_path, monkeypatch):
    key = tmp_path / "sm2.key"
    key.write_text("3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8\n")
    monkeypatch.setenv("DG_TEST_SM4", "0123456789abcdeffedcba9876543210")
    cfg = load(write_config(tmp_path / "ok.toml", BASE + f"""
[qr]
film_url = "http://x/y"
sm4_key_env = "DG_TEST_SM4"
[login]
sm2_private_key_file = "{key}"
"""))
    assert cfg.qr.sm4_key.reveal() == "0123456789abcdeffedcba9876543210"
    assert cfg.qr.sm4_key.source == "env:DG_TEST_SM4"
    assert cfg.login.sm2_private_key.reveal().startswith("3945208f")
    assert "3945208f" not in repr(cfg.login)


def test_config_path_from_environment(tmp_path):
    cfg = write_config(tmp_path / "ok.toml", BASE)
    r = run_cli("check-config", env={"DICOMGATE_CONFIG": str(cfg)})
    assert r.returncode == 0 and str(cfg) in r.stdout


def test_sections_left_out_turn_features_off(tmp_path):
    cfg = load(write_config(tmp_path / "ok.toml", BASE))
    assert not any(cfg.features().values())  # nobody may store: not even the SCP
    cfg = load(write_config(tmp_path / "ok2.toml", BASE + 'allowed_calling_aets = ["CT1"]\n'))
    assert {k for k, v in cfg.features().items() if v} == {"storage SCP (Portal AET)"}
