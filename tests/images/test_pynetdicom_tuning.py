"""pynetdicom internals dicomgate tunes (dicomgate/images/pynetdicom_tuning.py): an upgrade
that removes or renames one of them must fail here, not slow down or copy every dataset."""

from __future__ import annotations

import configparser
from pathlib import Path

from packaging.specifiers import SpecifierSet
from pynetdicom import AE, Association, _config, dimse_messages
from pynetdicom.sop_class import Verification

from dicomgate.images import pynetdicom_tuning

ROOT = Path(__file__).resolve().parents[2]


def test_installed_pynetdicom_has_everything_the_tuning_relies_on():
    assert pynetdicom_tuning.missing() == [], (
        f"pynetdicom {pynetdicom_tuning.installed_version()} lacks what "
        f"dicomgate/images/pynetdicom_tuning.py relies on (measured on "
        f"{pynetdicom_tuning.MEASURED_ON}): re-measure bench/receive.py and adapt the module")


def test_installed_version_is_in_the_pinned_range():
    spec = SpecifierSet(pynetdicom_tuning.PINNED)
    assert pynetdicom_tuning.installed_version() in spec
    assert pynetdicom_tuning.MEASURED_ON in spec
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = cfg["options"]["install_requires"].split()
    assert f"pynetdicom{pynetdicom_tuning.PINNED}" in requires


def test_dul_idle_sleep_is_an_attribute_of_a_real_association():
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = Association(ae, mode="requestor")
    default = assoc.dul._run_loop_delay
    assert isinstance(default, float) and default > pynetdicom_tuning.DUL_IDLE_SLEEP


def test_received_datasets_go_to_the_given_folder_hashed(tmp_path, monkeypatch):
    # Process-wide settings: put back what was there when the test ends.
    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", dimse_messages.NamedTemporaryFile)
    for name in ("STORE_RECV_CHUNKED_DATASET", "LOG_HANDLER_LEVEL"):
        monkeypatch.setattr(_config, name, getattr(_config, name))
    pynetdicom_tuning.receive_into(tmp_path)
    # pynetdicom calls the factory with these arguments (dimse_messages.DIMSEMessage.decode_msg)
    f = dimse_messages.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")
    f.write(b"abc")
    f.file.flush()
    f.close()
    path = Path(f.name)
    assert path.parent == tmp_path and path.read_bytes() == b"abc"
    size, digest = pynetdicom_tuning.digest_of(path)
    assert size == 3 and digest.startswith("ba7816bf")
