"""Every setting and patch dicomgate applies to pynetdicom, in one place.

Measured on pynetdicom 3.0.4 (bench/receive.py figures in bench/README.md); setup.cfg pins
pynetdicom>=3.0,<3.1 because two of these reach into internals that a minor release may
change. tests/images/test_pynetdicom_tuning.py fails loudly when an installed pynetdicom no
longer has what they rely on; the SCP logs `pynetdicom.tuning_unavailable` at start.

- Public configuration (`pynetdicom._config`, documented): datasets received in chunks
  to a file, not memory; pynetdicom's own per-PDU log handlers off.
- Internal: `dimse_messages.NamedTemporaryFile`, the factory of the temp file a dataset is
  received into, replaced to put it on the spool's file system (storing it is a rename, not
  a second copy of every byte) and to hash it while it is written.
- Internal: `DULServiceProvider._run_loop_delay`, the DUL thread's idle sleep, shortened.

Negotiation (the sender's syntax order, the bounded PDU, rejected contexts recorded) uses
public API only (EVT_REQUESTED, `acceptor.supported_contexts`) and lives in negotiation.py.
"""

from __future__ import annotations

import hashlib
import inspect
import socket
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pynetdicom
from pynetdicom import _config, dimse_messages, dul, evt

MEASURED_ON = "3.0.4"
PINNED = ">=3.0,<3.1"  # as in setup.cfg

# Suffix of the temp files datasets are received into (spool .part files are others').
RECEIVING_SUFFIX = ".dcm"

# How long an association's DUL thread sleeps when it found nothing to do (pynetdicom's
# default is 1 ms). The C-STORE response waits in its queue for this, and so does the next
# request's first PDU: ~1 ms per instance of a serial C-MOVE. 0.2 ms costs a few thousand
# cheap wake-ups a second, and only while an association is open (network_timeout ends
# idle ones).
DUL_IDLE_SLEEP = 0.0002


def missing() -> list[str]:
    """What this module relies on and the installed pynetdicom lacks (empty when all is there)."""
    out = []
    if not callable(getattr(dimse_messages, "NamedTemporaryFile", None)) or \
            "NamedTemporaryFile(" not in inspect.getsource(dimse_messages):
        out.append("pynetdicom.dimse_messages.NamedTemporaryFile (the received-dataset temp "
                   "file factory)")
    if "self._run_loop_delay" not in inspect.getsource(dul.DULServiceProvider):
        out.append("pynetdicom.dul.DULServiceProvider._run_loop_delay (the DUL idle sleep)")
    for name in ("STORE_RECV_CHUNKED_DATASET", "LOG_HANDLER_LEVEL"):
        if not hasattr(_config, name):
            out.append(f"pynetdicom._config.{name}")
    return out


def installed_version() -> str:
    return pynetdicom.__version__


class _HashingFile:
    """pynetdicom's temp file for one received dataset, hashed (SHA-256) as it is written.

    The hash is computed while the rest of the dataset is still on the wire (hashlib
    releases the GIL), instead of reading the finished file back before the response."""

    def __init__(self, folder: Path):
        self._file = tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=RECEIVING_SUFFIX,
                                                 dir=str(folder))
        self.name = self._file.name
        self.file = self._file.file  # pynetdicom flushes through it after each PDV
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


# Files being received, by path; an entry goes when pynetdicom drops its file object.
_receiving: weakref.WeakValueDictionary[str, _HashingFile] = weakref.WeakValueDictionary()


def receive_into(folder: Path, hashing: bool = True) -> None:
    """Receive datasets in chunks into temp files in `folder` (process-wide), hashed as they
    are written unless `hashing` is False (the bare-SCP benchmark)."""
    _config.STORE_RECV_CHUNKED_DATASET = True  # datasets go to disk, not memory
    # pynetdicom's own per-PDU/per-message log handlers format info/debug lines that its
    # logger (held at WARNING, see logs.py) drops anyway; its warnings still log.
    _config.LOG_HANDLER_LEVEL = "none"

    def open_hashing(*_args: Any, **_kwargs: Any) -> _HashingFile:
        f = _HashingFile(folder)
        _receiving[f.name] = f
        return f

    def open_plain(*_args: Any, **_kwargs: Any) -> Any:
        return tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=RECEIVING_SUFFIX,
                                           dir=str(folder))

    if hasattr(dimse_messages, "NamedTemporaryFile"):
        dimse_messages.NamedTemporaryFile = open_hashing if hashing else open_plain


def digest_of(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of a received file if every byte of it went through _HashingFile."""
    f = _receiving.pop(str(path), None)
    if f is None:
        return None
    try:
        if path.stat().st_size != f.size:
            return None
    except OSError:
        return None
    return f.size, f.sha256.hexdigest()


def tune_connection(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler. Send each C-STORE response at once: with Nagle's algorithm the
    small responses meet the sender's delayed ACK and every instance stalls ~40 ms on a
    quiet link. Shorten the DUL's idle sleep (see DUL_IDLE_SLEEP)."""
    d = event.assoc.dul
    sock = getattr(d.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(d, "_run_loop_delay"):
        d._run_loop_delay = DUL_IDLE_SLEEP
