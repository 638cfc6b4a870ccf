"""Transfer syntax and PDU negotiation of the Portal AET against senders nobody here wrote
(issue 13 points 1, 2, 4): the sender's first proposed syntax we support is accepted, per
context, so compressed data arrives as stored; the PDU we announce is bounded; a rejected
presentation context is logged and recorded with its SOP class and syntaxes."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from images_helpers import GW_AET, PACS_AET, same_dataset
from pacs_peers import DcmQrScp, storescu
from pydicom import uid as uids
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage
from structlog.testing import capture_logs

from dicomgate.images.negotiation import MAX_PDU
from dicomgate.sandbox.studies import StudySpec, bundled_instances, ct_instances
from tests.support.studies import write_study

SV1 = "SC_rgb_jpeg_gdcm.dcm"        # JPEG lossless SV1 (1.2.840.10008.1.2.4.70)
BASELINE = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG baseline (1.2.840.10008.1.2.4.50), lossy


ONE_CONTEXT = """[[TransferSyntaxes]]
[Fallback]
TransferSyntax1 = {syntax}
TransferSyntax2 = 1.2.840.10008.1.2.1
TransferSyntax3 = 1.2.840.10008.1.2

[[PresentationContexts]]
[OneContext]
PresentationContext1 = {sop_class}\\Fallback

[[Profiles]]
[Fallback]
PresentationContexts = OneContext
"""


@pytest.mark.parametrize(("name", "syntax"), [
    (SV1, uids.JPEGLosslessSV1), (BASELINE, uids.JPEGBaseline8Bit),
    ("JPEG-lossy.dcm", uids.JPEGExtended12Bit),
    ("MR_small_jpeg_ls_lossless.dcm", uids.JPEGLSLossless),
    ("MR_small_jp2klossless.dcm", uids.JPEG2000Lossless),
    ("SC_rgb_rle_2frame.dcm", uids.RLELossless)])
def test_one_context_with_fallbacks_keeps_the_compressed_syntax(tmp_path, gateway, name,
                                                                syntax):
    """storescu proposing [compressed, explicit, implicit] in ONE context (what DCMTK-based
    PACSs do): the Portal AET must take the compressed one, so nothing is decompressed or
    re-encoded (storescu would decompress what it can, and fail the rest)."""
    spec = StudySpec(accession="SYN1")
    files = write_study(bundled_instances(spec, names=(name,)), tmp_path / "in")
    profile = tmp_path / "assoc.cfg"
    sop_class = pydicom.dcmread(files[0], stop_before_pixels=True).SOPClassUID
    profile.write_text(ONE_CONTEXT.format(syntax=syntax, sop_class=sop_class))
    out = storescu(GW_AET, gateway.config.dicom.port, files, "-xf", str(profile), "Fallback",
                   calling="MODALITY1")
    assert out.returncode == 0, out.stderr
    (row,) = gateway.store.instances.of_study(spec.study_uid)
    assert row.transfer_syntax == syntax
    ours = Path(row.path).read_bytes()
    assert same_dataset(ours, files[0].read_bytes()) == []
    sent = pydicom.dcmread(files[0])
    assert pydicom.dcmread(io.BytesIO(ours)).PixelData == sent.PixelData  # not re-encoded


def test_pynetdicom_sender_order_is_followed_per_context(gateway):
    """Two contexts for the same SOP class with opposite orders: each gets its own first."""
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, [uids.JPEGLosslessSV1, uids.ExplicitVRLittleEndian])
    ae.add_requested_context(SecondaryCaptureImageStorage,
                             [uids.ImplicitVRLittleEndian, uids.JPEGBaseline8Bit])
    ae.add_requested_context(SecondaryCaptureImageStorage,
                             [uids.JPEGBaseline8Bit, uids.ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", gateway.config.dicom.port, ae_title=GW_AET)
    assert assoc.is_established
    got = [(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts]
    # the acceptor's answer also bounds the PDU the sender may send
    acceptor_max_pdu = assoc.acceptor.maximum_length
    assoc.release()
    assert got == [(CTImageStorage, uids.JPEGLosslessSV1),
                   (SecondaryCaptureImageStorage, uids.ImplicitVRLittleEndian),
                   (SecondaryCaptureImageStorage, uids.JPEGBaseline8Bit)]
    assert 0 < acceptor_max_pdu == MAX_PDU <= 1024 * 1024


def test_rejected_context_is_logged_and_recorded(gateway):
    private = "1.2.826.0.1.3680043.9.9999.77"  # a private transfer syntax nobody supports
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, [private])
    ae.add_requested_context(CTImageStorage, [uids.ExplicitVRLittleEndian])
    with capture_logs() as logs:
        assoc = ae.associate("127.0.0.1", gateway.config.dicom.port, ae_title=GW_AET)
        assert assoc.is_established
        assert len(assoc.rejected_contexts) == 1
        data = ct_instances(StudySpec(accession="SYN2"), series=1, per_series=1)[0]
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status == 0
        assoc.release()
    rejected = [e for e in logs if e["event"] == "association.context_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["sop_class_uid"] == CTImageStorage
    assert rejected[0]["transfer_syntaxes"] == [private]
    events = _wait_events(gateway, "context_rejected")
    assert events[0].sop_class_uid == CTImageStorage
    assert events[0].transfer_syntaxes == private
    assert events[0].calling_aet == "MODALITY1"
    assert "transfer syntax" in events[0].reason


def _wait_events(gateway, kind: str, n: int = 1, timeout: float = 5.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = gateway.store.dicom_events.since(0, (kind,))
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def dcmqrscp_xs(tmp_path, gw_port):
    """dcmqrscp proposing [JPEG lossless SV1, explicit, implicit...] in one context."""
    peer = DcmQrScp(tmp_path / "dq", PACS_AET, {GW_AET: ("127.0.0.1", gw_port)},
                    options=("-xs", "+xs")).start()
    yield peer
    peer.stop()


def test_dcmqrscp_moves_jpeg_lossless_as_stored(tmp_path, dcmqrscp_xs, gw_port):
    from images_helpers import images_config, start_gateway

    from dicomgate.config.load import load

    spec = StudySpec(accession="SYN3")
    files = write_study(bundled_instances(spec, names=(SV1,)), tmp_path / "in")
    dcmqrscp_xs.load(files, "-xs")
    gw = start_gateway(load(images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state",
                                         port=gw_port, pacs_port=dcmqrscp_xs.port)))
    try:
        result = gw.retriever.run(study_uid=spec.study_uid)
        assert "complete, 1 instances" in result
        (row,) = gw.store.instances.of_study(spec.study_uid)
        assert row.transfer_syntax == uids.JPEGLosslessSV1
        ours = pydicom.dcmread(row.path)
        assert ours.PixelData == pydicom.dcmread(files[0]).PixelData
    finally:
        gw.scp.stop()
        gw.store.close()
