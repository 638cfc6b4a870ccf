"""pynetdicom internals dicomgate tunes (dicomgate/images/pynetdicom_tuning.py): an upgrade
that removes or renames one of them must fail here, not slow down or copy every dataset."""

from __future__ import annotations

import configparser
import io
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
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


# Values a peer may put where negotiation expects a UID: conformant UIDs, non-conformant
# ones (leading zeros, letters, too long), padding, empty, bytes, None.
UID_LIKE = st.one_of(
    UIDS, UIDS.map(lambda u: u + ".0"), UIDS.map(lambda u: "0" + u),
    UIDS.map(lambda u: u + " "), st.sampled_from(["", " ", "1.2.840.10008.1.2.1",
                                                  "1.2.840.10008.5.1.4.1.1.2", "1" * 65]),
    st.text(string.digits + ".", max_size=70), st.text(max_size=12))
UID_VALUES = st.one_of(UID_LIKE, UID_LIKE.map(lambda u: u.encode("utf-8")), st.none())


def _outcome(caplog, call, *args):
    caplog.clear()
    try:
        result = call(*args)
        got = (type(result).__name__, None if result is None else str(result))
    except Exception as exc:  # the same error pynetdicom raises, message and all
        got = (type(exc).__name__, str(exc))
    return got, [(r.levelname, r.getMessage()) for r in caplog.records]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # cleared per call
@given(values=st.lists(st.tuples(UID_VALUES, st.booleans(), st.booleans(), st.booleans()),
                       min_size=1, max_size=6),
       enforce=st.booleans())
def test_memoised_set_uid_answers_as_pynetdicom_does(values, enforce, caplog):
    """Each value twice (the second from the memo when remembered): the same UID, error and
    log lines as pynetdicom.utils.set_uid, in either conformance mode."""
    from pynetdicom import presentation, utils

    from dicomgate.images.pynetdicom_uids import UidMemo

    caplog.set_level("DEBUG", logger="pynetdicom")
    memo = UidMemo(utils.set_uid, presentation.PresentationContext.add_transfer_syntax)
    before = _config.ENFORCE_UID_CONFORMANCE
    _config.ENFORCE_UID_CONFORMANCE = enforce
    try:
        for value, allow_empty, allow_none, validate in values * 2:
            args = (value, "Transfer Syntax Name", allow_empty, allow_none, validate)
            assert _outcome(caplog, memo.set_uid, *args) == \
                _outcome(caplog, utils.set_uid, *args)
    finally:
        _config.ENFORCE_UID_CONFORMANCE = before


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # cleared per call
@given(syntaxes=st.lists(UID_VALUES, min_size=1, max_size=8), enforce=st.booleans())
def test_memoised_add_transfer_syntax_builds_what_pynetdicom_builds(syntaxes, enforce,
                                                                     caplog):
    """Two contexts built from the same syntaxes, one through the memo, one through
    pynetdicom's own method: the same syntax list, errors and log lines (twice over)."""
    from pynetdicom import utils
    from pynetdicom.presentation import PresentationContext

    from dicomgate.images.pynetdicom_uids import UidMemo

    caplog.set_level("DEBUG", logger="pynetdicom")
    own = PresentationContext.add_transfer_syntax
    memo = UidMemo(utils.set_uid, own)
    before = _config.ENFORCE_UID_CONFORMANCE
    _config.ENFORCE_UID_CONFORMANCE = enforce
    try:
        for _ in range(2):
            ours, theirs = PresentationContext(), PresentationContext()
            for syntax in syntaxes:
                assert _outcome(caplog, memo.add_transfer_syntax, ours, syntax) == \
                    _outcome(caplog, own, theirs, syntax)
            assert [(type(t), str(t)) for t in ours.transfer_syntax] == \
                [(type(t), str(t)) for t in theirs.transfer_syntax]
    finally:
        _config.ENFORCE_UID_CONFORMANCE = before


SHORT_UIDS = UIDS.filter(lambda u: len(u) <= 64)  # what a sender can propose


def _associate_rq(abstract_syntaxes, syntaxes) -> bytes:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    rq = A_ASSOCIATE()
    rq.application_context_name = "1.2.840.10008.3.1.1.1"
    rq.calling_ae_title, rq.called_ae_title = "ORTHANC", "DICOMGATE"
    contexts = []
    for i, sop_class in enumerate(abstract_syntaxes):
        cx = build_context(sop_class, syntaxes)
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    rq.presentation_context_definition_list = contexts
    limit = MaximumLengthNotification()
    limit.maximum_length_received = 16384
    rq.user_information = [limit]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    return pdu.encode()


def _negotiated(data: bytes, supported) -> tuple:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.presentation import negotiate_as_acceptor

    pdu = A_ASSOCIATE_RQ()
    pdu.decode(data)
    primitive = pdu.to_primitive()
    accepted, _roles = negotiate_as_acceptor(primitive.presentation_context_definition_list,
                                             supported)
    return (pdu.encode(), _snapshot(primitive.presentation_context_definition_list),
            [(cx.context_id, cx.result, str(cx.abstract_syntax),
              [str(t) for t in cx.transfer_syntax]) for cx in accepted])


@settings(max_examples=40, deadline=None)
@given(sop_classes=st.lists(st.one_of(
    st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4",
                     "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.3"]), SHORT_UIDS),
    min_size=1, max_size=20),
       syntaxes=st.lists(st.one_of(st.sampled_from(
           ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.2"]), SHORT_UIDS), min_size=1, max_size=4,
           unique=True))
def test_an_associate_rq_decodes_and_negotiates_alike_with_the_memo(sop_classes, syntaxes):
    """The whole negotiation of an A-ASSOCIATE-RQ (decode, contexts, result) with the UID
    checks memoised, twice, against pynetdicom's own path: the same contexts, results and
    re-encoded PDU."""
    import pytest
    from pynetdicom import pdu_items, pdu_primitives, presentation
    from pynetdicom.presentation import build_context

    from dicomgate.images.negotiation import TRANSFER_SYNTAXES, storage_sop_classes

    supported = [build_context(u, TRANSFER_SYNTAXES) for u in storage_sop_classes()[:60]]
    data = _associate_rq(sop_classes, syntaxes)
    expected = _negotiated(data, supported)
    with pytest.MonkeyPatch.context() as mp:
        for module in pynetdicom_tuning.UID_CHECK_MODULES:
            mp.setattr(module, "set_uid", module.set_uid)
        mp.setattr(presentation.PresentationContext, "add_transfer_syntax",
                   presentation.PresentationContext.add_transfer_syntax)
        pynetdicom_tuning.memoise_uid_checks()
        assert pynetdicom_tuning._is_memo(pdu_items.set_uid)
        assert pynetdicom_tuning._is_memo(pdu_primitives.set_uid)
        assert _negotiated(data, supported) == expected
        assert _negotiated(data, supported) == expected


def _store_rsp_pdvs(message_class, primitive, max_pdu) -> tuple:
    msg = message_class()
    msg.primitive_to_message(primitive)
    pdvs = [pdv for pdata in msg.encode_msg(1, max_pdu)
            for pdv in pdata.presentation_data_value_list]
    return pdvs, msg.command_set.CommandGroupLength, str(msg.command_set.Status)


@settings(max_examples=400, deadline=None)
@given(message_id=st.integers(0, 0xFFFF), status=st.integers(0, 0xFFFF),
       sop_class=st.one_of(SHORT_UIDS, st.sampled_from(["1.2.840.10008.5.1.4.1.1.2",
                                                  "1.2.840.10008.5.1.4.1.1.4"])),
       sop_instance=SHORT_UIDS, comment=st.one_of(st.none(), st.text("ABC xyz", max_size=20)),
       max_pdu=st.sampled_from([0, 16384, 262144, 60, 120]))
def test_store_responses_are_the_bytes_pynetdicom_sends(message_id, status, sop_class,
                                                        sop_instance, comment, max_pdu):
    """Every C-STORE-RSP, through our message class and through pynetdicom's: the same PDVs
    on the wire (fragmented alike when the PDU is small), and the same command set for
    whoever reads the message (EVT_DIMSE_SENT)."""
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from dicomgate.images import pynetdicom_store_rsp

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.Status = message_id, status
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = sop_class, sop_instance
    rsp.ErrorComment = comment
    assert _store_rsp_pdvs(pynetdicom_store_rsp.C_STORE_RSP, rsp, max_pdu) == \
        _store_rsp_pdvs(C_STORE_RSP, rsp, max_pdu)
