"""pynetdicom internals dicomgate tunes (dicomgate/images/pynetdicom_tuning.py): an upgrade
that removes or renames one of them must fail here, not slow down or copy every dataset."""

from __future__ import annotations

import configparser
import io
import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, Association, _config, dimse_messages
from pynetdicom.dsutils import create_file_meta
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


def _snapshot(contexts) -> list[tuple]:
    return [(str(cx.abstract_syntax), tuple(str(t) for t in cx.transfer_syntax),
             cx.scu_role, cx.scp_role, cx.context_id) for cx in contexts]


def test_shared_contexts_are_never_modified_by_associations(tmp_path, gw_port):
    """SharedContexts.__deepcopy__ returns the one list every association uses: true only
    while pynetdicom (and our EVT_REQUESTED handler) never modify it. Associations with
    several syntax orders must leave it as it was."""
    import subprocess

    from pynetdicom import evt
    from pynetdicom.sop_class import CTImageStorage

    from dicomgate.images.negotiation import TRANSFER_SYNTAXES, prefer_sender_order
    from dicomgate.sandbox.studies import StudySpec, ct_instances
    from tests.support.studies import write_study

    ae = AE(ae_title="SHARED")
    ae.add_supported_context(CTImageStorage, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    shared = pynetdicom_tuning.SharedContexts(ae.supported_contexts)
    before = _snapshot(shared)
    server = ae.start_server(("127.0.0.1", gw_port), block=False, contexts=shared,
                             evt_handlers=[(evt.EVT_REQUESTED, prefer_sender_order),
                                           (evt.EVT_C_STORE, lambda _e: 0x0000)])
    try:
        [f] = write_study(ct_instances(StudySpec("ACC-SHARED"), series=1, per_series=1),
                          tmp_path / "in")
        for order in ("-xi", "-xb", "-xe", "-xd"):  # implicit first, big endian first...
            out = subprocess.run(["storescu", order, "-aec", "SHARED", "127.0.0.1",
                                  str(gw_port), str(f)], capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
    finally:
        server.shutdown()
    assert _snapshot(shared) == before


def test_syntaxes_set_without_the_setter_read_back_through_the_public_getter():
    from pynetdicom.presentation import PresentationContext

    cx = PresentationContext()
    cx.abstract_syntax = Verification
    pynetdicom_tuning.set_syntaxes_checked_once(cx, ["1.2.840.10008.1.2.1",
                                                     "1.2.840.10008.1.2"])
    assert [str(t) for t in cx.transfer_syntax] == ["1.2.840.10008.1.2.1",
                                                    "1.2.840.10008.1.2"]


def test_an_adopted_server_stops_with_the_ae(gw_port):
    import socket

    ae = AE()
    ae.add_supported_context(Verification)
    server = ae.make_server(("127.0.0.1", gw_port),
                            server_class=pynetdicom_tuning.SharedPortServer)
    import threading
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pynetdicom_tuning.adopt_server(ae, server)
    socket.create_connection(("127.0.0.1", gw_port), timeout=2).close()
    ae.shutdown()  # must stop the adopted server too
    try:
        socket.create_connection(("127.0.0.1", gw_port), timeout=2).close()
        still_listening = True
    except OSError:
        still_listening = False
    assert not still_listening


def test_an_aborted_associations_waiting_loop_can_be_woken():
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = Association(ae, mode="requestor")
    pynetdicom_tuning.wake_waiting(assoc)
    assert assoc.dimse.msg_queue.get(timeout=1) == (None, None)


def test_a_full_disk_while_receiving_is_caught_not_raised(tmp_path, monkeypatch):
    """ENOSPC in the middle of a dataset: the rest is drained, write_failure says why."""
    import subprocess

    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", dimse_messages.NamedTemporaryFile)
    for name in ("STORE_RECV_CHUNKED_DATASET", "LOG_HANDLER_LEVEL"):
        monkeypatch.setattr(_config, name, getattr(_config, name))
    fs = tmp_path / "small"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(fs)], check=True)
    try:
        pynetdicom_tuning.receive_into(fs)
        f = dimse_messages.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")
        for _ in range(40):  # 160 KB into 64 KB
            assert f.write(b"\0" * 4096) == 4096
            f.file.flush()
        f.close()
        path = Path(f.name)
        reason = pynetdicom_tuning.write_failure(path)
        assert reason is not None and "disk full" in reason
        path.unlink()
        g = dimse_messages.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")
        g.write(b"abc")
        g.close()
        assert pynetdicom_tuning.write_failure(Path(g.name)) is None  # room again
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


UIDS = st.from_regex(r"[1-9][0-9]{0,3}(\.(0|[1-9][0-9]{0,12})){1,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(uids=st.lists(UIDS, min_size=4, max_size=4),
       version=st.text(string.ascii_uppercase + string.digits + "_.", min_size=1, max_size=16))
def test_fast_file_meta_is_what_pydicom_writes(uids, version):
    """The File Meta pynetdicom starts each received file with: the same bytes as pydicom's
    write_file_meta_info(create_file_meta(...)), so the stored files do not change."""
    sop_class, sop_uid, syntax, implementation = uids
    expected = io.BytesIO()
    write_file_meta_info(expected, create_file_meta(
        sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_uid),
        transfer_syntax=UID(syntax), implementation_uid=UID(implementation),
        implementation_version=version))
    fast = pynetdicom_tuning.FastFileMeta(create_file_meta, write_file_meta_info)
    got = io.BytesIO()
    fast.write(got, fast.create(sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_uid),
                                transfer_syntax=UID(syntax), implementation_uid=implementation,
                                implementation_version=version))
    assert got.getvalue() == expected.getvalue()
