"""Helpers for the images tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicomgate.config import Config
from dicomgate.images.ingest import Ingest
from dicomgate.images.retrieve import Retriever
from dicomgate.images.scp import StorageSCP
from dicomgate.images.scu import PacsClient
from dicomgate.images.spool import Spool
from dicomgate.state import Store, Task
from dicomgate.state.kinds import Retrieve, decode
from tests.support import gateway_toml, toml_table, write_config
from tests.support.engines import open_store

GW_AET = "DICOMGATE"
PACS_AET = "HOSPPACS"


def images_config(path: Path, *, state_dir: Path, port: int, pacs_port: int,
                  min_free_disk: str = "1MB", extra: str = "") -> Path:
    """A gateway with the Portal AET on `port` and the PACS at `pacs_port`; `extra` appends
    sections."""
    return write_config(path, (
        gateway_toml(state_dir, port, ae_title=GW_AET, bind="127.0.0.1",
                     min_free_disk=min_free_disk, allowed_calling_aets=["MODALITY1"],
                     network_timeout="10s")
        + toml_table("pacs", ae_title=PACS_AET, host="127.0.0.1", port=pacs_port,
                     echo_interval="1s", timeout="5s", move_timeout="60s")
        + toml_table("tasks", workers=2, backoff_base="1s") + extra + "\n"))


@dataclass
class Gateway:
    config: Config
    store: Store
    spool: Spool
    scp: StorageSCP
    pacs: PacsClient
    retriever: Retriever


def start_gateway(config: Config) -> Gateway:
    store = open_store(config)
    spool = Spool(config.gateway.state_dir)
    uploads = config.upstream is not None
    scp = StorageSCP(config, Ingest(store, spool, config.dicom.min_free_disk,
                                    queue_uploads=uploads))
    scp.start()
    pacs = PacsClient(config.dicom, config.pacs)
    return Gateway(config, store, spool, scp, pacs,
                   Retriever(store, pacs, queue_uploads=uploads))


def same_dataset(ours: bytes, theirs: bytes) -> list[str]:
    """Differences between two Part 10 files outside group 0002 (empty when equal).

    Data Set Trailing Padding (FFFC,FFFC) has no meaning (PS3.5 7.8) and Orthanc's DCMTK
    drops it when it sends, so it may exist only in the PACS's copy; nothing else may differ.
    """
    a = pydicom.dcmread(io.BytesIO(ours))
    b = pydicom.dcmread(io.BytesIO(theirs))
    problems = []
    padding = 0xFFFCFFFC
    if padding in {e.tag for e in a}:
        problems.append("our copy has trailing padding the PACS did not send")
    tags_a = {e.tag for e in a if e.tag.group != 2}
    tags_b = {e.tag for e in b if e.tag.group != 2 and e.tag != padding}
    if tags_a != tags_b:
        problems.append(f"tags differ: {sorted(tags_a ^ tags_b)}")
    for tag in sorted(tags_a & tags_b):
        ea, eb = a[tag], b[tag]
        if ea.value != eb.value:
            problems.append(f"{tag} value differs")
        # Orthanc's DCMTK sends encapsulated Pixel Data as OB even where its file says OW
        # (PS3.5 A.4 requires OB): the bytes are what must not change.
        if ea.VR != eb.VR and not (tag == 0x7FE00010 and ea.VR == "OB"):
            problems.append(f"{tag} VR {ea.VR} != {eb.VR}")
    if a.file_meta.TransferSyntaxUID != b.file_meta.TransferSyntaxUID:
        problems.append("transfer syntax differs")
    return problems


def retrieve_task(payload: dict) -> tuple[Retrieve, Task]:
    """A running `retrieve` task as a worker hands it to the handler: (work, task)."""
    now = time.time()
    work = decode("retrieve", payload)
    return work, Task(id=1, kind="retrieve", key=work.key(), payload=payload,
                      state="running", attempts=1, max_attempts=None, run_after=now,
                      lease_owner="t", lease_until=now + 60, last_error=None, result=None,
                      exam_id=None, study_uid=None, created_at=now, updated_at=now,
                      finished_at=None, work=work)


def with_long_uid(blob: bytes, digit: str) -> tuple[bytes, str]:
    """The instance with a 66-character SOP Instance UID ("1.2.826.0.1.3680043.8.498."
    and 40 x `digit`): our Portal AET quarantines it. The bytes and the UID."""
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498." + digit * 40
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    with pytest.warns(UserWarning):  # pydicom warns of the over-long UID it writes
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), str(ds.SOPInstanceUID)
