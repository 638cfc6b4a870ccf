"""Query models and association failures against DCMTK dcmqrscp (issue 13 points 6, 7):
Patient Root only, FIND required on the move association, and rejections whose message
names the side to fix and the configuration key."""

from __future__ import annotations

import pytest
from images_helpers import GW_AET, PACS_AET, images_config, start_gateway
from pacs_peers import DcmQrScp

from dicomgate.config.load import load
from dicomgate.images.retrieve import present_sop_uids
from dicomgate.images.scu import PacsClient, PacsRefused
from dicomgate.sandbox.studies import StudySpec, ct_instances, sop_uid_of
from tests.support.studies import write_study


def _peer(tmp_path, gw_port, *options, calling=()):
    return DcmQrScp(tmp_path / "dq", PACS_AET, {GW_AET: ("127.0.0.1", gw_port)},
                    options=options, calling_aets=calling).start()


def _gateway(tmp_path, gw_port, pacs_port, pacs_aet=PACS_AET):
    cfg = images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state", port=gw_port,
                       pacs_port=pacs_port)
    if pacs_aet != PACS_AET:
        cfg.write_text(cfg.read_text().replace(f'ae_title = "{PACS_AET}"',
                                               f'ae_title = "{pacs_aet}"'))
    return start_gateway(load(cfg))


@pytest.mark.parametrize("options", [("-QS",), ("--require-find",), ("-QS", "--require-find")],
                         ids=["patient-root-only", "find-on-move", "both"])
def test_retrieve_from_dcmqrscp_model_variants(tmp_path, gw_port, options):
    spec = StudySpec(accession="QR1")
    data = ct_instances(spec, series=2, per_series=2)
    peer = _peer(tmp_path, gw_port, *options)
    gw = None
    try:
        peer.load(write_study(data, tmp_path / "in"))
        gw = _gateway(tmp_path, gw_port, peer.port)
        result = gw.retriever.run(accession_no="QR1")
        assert "complete, 4 instances" in result
        assert present_sop_uids(gw.store, spec.study_uid) == {sop_uid_of(d) for d in data}
    finally:
        peer.stop()
        if gw is not None:
            gw.scp.stop()
            gw.store.close()


def test_misspelled_pacs_ae_title_names_the_key(tmp_path, gw_port):
    peer = _peer(tmp_path, gw_port)
    try:
        cfg = load(images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state",
                                port=gw_port, pacs_port=peer.port))
        wrong = cfg.pacs.__class__(**{**cfg.pacs.__dict__, "ae_title": "HOSPPAC"})
        client = PacsClient(cfg.dicom, wrong)
        for _ in range(5):  # the rejection must never read as a hung or unknown PACS
            with pytest.raises(PacsRefused) as err:
                client.echo()
            msg = str(err.value)
            assert "pacs.ae_title" in msg and "'HOSPPAC'" in msg, msg
            assert "hung" not in msg
    finally:
        peer.stop()


def test_pacs_that_does_not_know_us_names_dicom_ae_title(tmp_path, gw_port):
    peer = _peer(tmp_path, gw_port, calling=("OTHERAE",))
    try:
        cfg = load(images_config(tmp_path / "gw.toml", state_dir=tmp_path / "state",
                                port=gw_port, pacs_port=peer.port))
        client = PacsClient(cfg.dicom, cfg.pacs)
        for _ in range(5):
            with pytest.raises(PacsRefused) as err:
                client.find("STUDY", {"StudyInstanceUID": "1.2.3"})
            msg = str(err.value)
            # dcmqrscp says "called AE title not recognised" to a caller it does not allow:
            # both keys are named, and what to register on the PACS
            assert f"register AE {GW_AET} (dicom.ae_title)" in msg, msg
            assert f"port {gw_port} on the PACS" in msg
            assert "hung" not in msg
    finally:
        peer.stop()


def test_dcmqrscp_that_cannot_convert_is_not_just_out_of_resources(tmp_path, gw_port):
    """dcmqrscp proposes only uncompressed syntaxes by default and cannot decompress JPEG
    2000: it answers 0xA702. The Portal AET rejected nothing, and the message says so and
    where to look, instead of a bare "out of resources"."""
    from dicomgate.images.scu import PacsUnavailable
    from dicomgate.sandbox.studies import bundled_instances

    spec = StudySpec(accession="QR702")
    files = write_study(bundled_instances(spec, names=("MR_small_jp2klossless.dcm",)),
                        tmp_path / "in")
    peer = _peer(tmp_path, gw_port, "+xv")  # accepts J2K lossless in, proposes uncompressed
    gw = None
    try:
        peer.load(files, "-xv")
        gw = _gateway(tmp_path, gw_port, peer.port)
        with pytest.raises(PacsUnavailable) as err:
            gw.retriever.run(study_uid=spec.study_uid)
        msg = str(err.value)
        assert "0xA702" in msg and "the Portal AET rejected nothing" in msg, msg
        assert "cannot convert" in msg
    finally:
        peer.stop()
        if gw is not None:
            gw.scp.stop()
            gw.store.close()
