"""Portal AET memory and speed against the maximum PDU it announces (issue 13 point 2).

One large multi-frame object is C-STOREd to dicomgate's storage SCP (its own process,
the daemon's settings) by two senders: a pynetdicom SCU sending the dataset as pynetdicom's
qrscp app does, which fills each PDU up to what the receiver announces, and DCMTK
storescu, which never sends PDUs over 128 KB whatever it is told. The receiver's MAX_PDU
(dicomgate/images/negotiation.py) is set per run; 0 is "unlimited" (before issue 13).
Reported: seconds, MB/s, the receiver's peak RSS (VmHWM). The peer is DCMTK storescp
receiving the same object from storescu, in the same run.

    .venv/bin/python bench/pdu.py                          # 200 MB; 0, 64K, 256K, 1M
    .venv/bin/python bench/pdu.py --size-mb 1024 --pdus 0 262144    # the 1 GB figure
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GW_AET = "DICOMGATE"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from receive import wait_port  # noqa: E402

RECEIVER = """
import sys, threading
from pathlib import Path
import dicomgate.images.scp as scp_module
scp_module.MAX_PDU = int(sys.argv[2])  # read when the AE is built
from dicomgate.config import load
from dicomgate.images.ingest import Ingest
from dicomgate.images.scp import StorageSCP
from dicomgate.images.spool import Spool
from dicomgate.state import Store
cfg = load(Path(sys.argv[1]))
store = Store(cfg.gateway.db_path)
scp = StorageSCP(cfg, Ingest(store, Spool(cfg.gateway.state_dir), cfg.dicom.min_free_disk,
                             queue_uploads=False))
scp.start()
assert scp.build_ae().maximum_pdu_size == int(sys.argv[2])
print("ready", flush=True)
sys.stdin.read()
scp.stop()
"""

SENDER = """
import sys
from pynetdicom import AE
from pydicom import dcmread
path, port = sys.argv[1], int(sys.argv[2])
ds = dcmread(path)  # as pynetdicom's qrscp sends: the dataset, encoded whole
ae = AE(ae_title="MODALITY1")
ae.maximum_pdu_size = 0
ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 600
assoc = ae.associate("127.0.0.1", port, ae_title="DICOMGATE", max_pdu=0)
assert assoc.is_established, "association failed"
status = assoc.send_c_store(ds)
assoc.release()
sys.exit(0 if status and status.Status == 0 else 1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(start, what: str) -> tuple[subprocess.Popen, int]:
    """start(port) -> process; a new port when the one picked was taken meanwhile (other
    programs' connections in TIME-WAIT hold ephemeral ports)."""
    for _ in range(5):
        port = free_port()
        proc = start(port)
        try:
            wait_port(port, proc)
            return proc, port
        except SystemExit:
            if proc.poll() is None:
                raise
    raise SystemExit(f"{what} could not listen (5 ports tried)")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_object(path: Path, size_mb: int) -> None:
    """A multi-frame 8-bit secondary capture of about size_mb MB, written in chunks."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frame = 1024 * 1024  # 1024 x 1024 x 8 bit
    frames = size_mb
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"  # MF grayscale byte SC
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "BENCH", "Bench^Pdu", "OT"
    ds.Rows = ds.Columns = 1024
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = b"\0"  # placeholder: the real value is streamed below
    head = path.with_suffix(".head")
    pydicom.dcmwrite(head, ds, enforce_file_format=True)
    raw = head.read_bytes()
    head.unlink()
    # replace the 1-byte (padded to 2) Pixel Data element with the full-length one
    tag = b"\xe0\x7f\x10\x00OB\x00\x00"
    at = raw.rindex(tag)
    length = frames * frame
    with open(path, "wb") as f:
        f.write(raw[:at] + tag + length.to_bytes(4, "little"))
        chunk = os.urandom(frame)
        for _ in range(frames):
            f.write(chunk)


def receive(work: Path, obj: Path, pdu: int, sender: str) -> tuple[float, float]:
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)

    def start(port: int) -> subprocess.Popen:
        cfg = work / "gw.toml"
        cfg.write_text(f'[gateway]\nhospital_id = "BENCH"\nstate_dir = "{state}"\n'
                       f'[dicom]\nae_title = "{GW_AET}"\nbind = "127.0.0.1"\nport = {port}\n'
                       'min_free_disk = "1GB"\n'
                       'allowed_calling_aets = ["MODALITY1", "STORESCU"]\n'
                       'network_timeout = "600s"\n[log]\nlevel = "warning"\nformat = "json"\n')
        return subprocess.Popen([sys.executable, "-c", RECEIVER, str(cfg), str(pdu)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=open(work / "receiver.log", "ab"), text=True)

    proc, port = listening(start, "the Portal AET")
    try:
        t0 = time.perf_counter()
        if sender == "pynetdicom":
            out = subprocess.run([sys.executable, "-c", SENDER, str(obj), str(port)],
                                 capture_output=True, text=True)
        else:
            out = subprocess.run(["storescu", "-aet", "STORESCU", "-aec", GW_AET,
                                  "--max-send-pdu", "131072", "127.0.0.1", str(port),
                                  str(obj)], capture_output=True, text=True,
                                 env=dict(os.environ, TCP_NODELAY="1"))
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{sender} failed: {out.stderr[-800:]}")
        return seconds, peak_rss_mb(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(60)


def storescp_peer(work: Path, obj: Path) -> tuple[float, float]:
    out_dir = work / "storescp"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    proc, port = listening(lambda port: subprocess.Popen(
        ["storescp", "-aet", GW_AET, "--max-pdu", "131072", "-od", str(out_dir), str(port)],
        env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL), "storescp")
    try:
        t0 = time.perf_counter()
        out = subprocess.run(["storescu", "-aec", GW_AET, "127.0.0.1", str(port), str(obj)],
                             capture_output=True, text=True, env=dict(os.environ,
                                                                      TCP_NODELAY="1"))
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"storescu -> storescp failed: {out.stderr[-800:]}")
        return seconds, peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--pdus", type=int, nargs="+", default=[0, 65536, 262144, 1048576])
    ap.add_argument("--senders", nargs="+", default=["pynetdicom", "storescu"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pdu-") as tmp:
        work = Path(tmp)
        obj = work / "object.dcm"
        make_object(obj, args.size_mb)
        mb = obj.stat().st_size / 1e6
        print(f"object: {mb:.0f} MB multi-frame, explicit VR LE")
        peer_s, peer_rss = storescp_peer(work, obj)
        print(f"peer storescp <- storescu: {peer_s:.2f} s, {mb / peer_s:.0f} MB/s, "
              f"peak RSS {peer_rss:.0f} MB")
        print("| sender | receiver max PDU | seconds | MB/s | ÷ storescp time | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for sender in args.senders:
            for pdu in args.pdus:
                s, rss = receive(work, obj, pdu, sender)
                print(f"| {sender} | {pdu or 'unlimited'} | {s:.2f} | {mb / s:.0f} | "
                      f"{s / peer_s:.2f} | {rss:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
