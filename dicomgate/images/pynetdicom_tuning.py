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
- Internal: the polling of an accepted association's two threads replaced by waits that
  end when there is something to do (pynetdicom_waits.py): the DUL thread's idle
  sleep (`_run_loop_delay`, passed to `time.sleep` in `pynetdicom.dul`) and the
  association thread's non-blocking read of `dimse.msg_queue`.
- Internal: the per-association deep copy of the accepted presentation contexts
  (`RequestHandler._create_association`) made a no-op (SharedContexts).
- Subclass: the threaded association server bound with SO_REUSEPORT (SharedPortServer), for
  several Portal AET processes on one port; it joins `AE._servers` (adopt_server) as
  `start_server` would, so `AE.shutdown` stops it.
- Internal: `PresentationContext._transfer_syntax` set without the public setter's
  per-UID validation (set_syntaxes_checked_once), for the sender-order copies.
- Internal: `Association.dimse.msg_queue`: an abandoned C-MOVE's wait is woken by an
  empty item (wake_waiting).
- pydicom's value validation off in the Portal AET process (skip_value_validation).
- Internal: `utils.set_uid` as imported by `pdu_items`, `pdu_primitives` and
  `presentation`, and `PresentationContext.add_transfer_syntax`, replaced by memoised
  stand-ins (pynetdicom_uids.py): a UID pynetdicom's own check passed without a warning is
  not checked again on the next association (memoise_uid_checks).
- Internal: `dimse._RSP_TO_MESSAGE[C_STORE]`, the message class of a C-STORE response,
  replaced by one that encodes our responses' command set straight to the same bytes
  (pynetdicom_store_rsp.py, encode_store_responses).

Negotiation (the sender's syntax order, the bounded PDU, rejected contexts recorded) uses
public API only (EVT_REQUESTED, `acceptor.supported_contexts`) and lives in negotiation.py.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import inspect
import os
import socket
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynetdicom
from pydicom import config as pydicom_config
from pynetdicom import (
    _config,
    association,
    dimse,
    dimse_messages,
    dimse_primitives,
    dul,
    evt,
    pdu_items,
    pdu_primitives,
    presentation,
    utils,
)
from pynetdicom.transport import ThreadedAssociationServer

from . import pynetdicom_store_rsp, pynetdicom_uids, pynetdicom_waits
from .spool import file_meta_bytes

MEASURED_ON = "3.0.4"
PINNED = ">=3.0,<3.1"  # as in setup.cfg

# Suffix of the temp files datasets are received into (spool .part files are others').
RECEIVING_SUFFIX = ".dcm"


def receiving_suffix(index: int) -> str:
    """Suffix of the temp files of Portal AET process `index` (dicom.scp_processes): one
    process cleaning up after its own restart must not remove what another is receiving."""
    return f".scp{index}{RECEIVING_SUFFIX}"

# How long an association's DUL thread sleeps when it found nothing to do (pynetdicom's
# default is 1 ms), where it cannot wait instead (wait_instead_of_polling unavailable).
DUL_IDLE_SLEEP = 0.0002


def _source(obj: object) -> str:
    """pynetdicom's source text, or "" when it is not available (a zipped or compiled-only
    install): the checks below then report the tuning as unavailable, never crash."""
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


@functools.cache
def _missing() -> tuple[str, ...]:
    return tuple(_check())


def missing() -> list[str]:
    """What this module relies on and the installed pynetdicom lacks (empty when all is there).
    Checked once per process: reading pynetdicom's source costs ~0.1 s of CPU."""
    return list(_missing())


def _check() -> list[str]:
    out = []
    if not callable(getattr(dimse_messages, "NamedTemporaryFile", None)) or \
            "NamedTemporaryFile(" not in _source(dimse_messages):
        out.append("pynetdicom.dimse_messages.NamedTemporaryFile (the received-dataset temp "
                   "file factory)")
    if "self._run_loop_delay" not in _source(dul.DULServiceProvider):
        out.append("pynetdicom.dul.DULServiceProvider._run_loop_delay (the DUL idle sleep)")
    if "time.sleep(self._run_loop_delay)" not in _source(dul.DULServiceProvider.run_reactor):
        out.append("pynetdicom.dul.DULServiceProvider.run_reactor's time.sleep(_run_loop_delay)")
    if "self.dimse.get_msg(block=False)" not in _source(association.Association._run_reactor):
        out.append("pynetdicom.association.Association._run_reactor's dimse.get_msg(block=False)")
    for name in ("create_file_meta", "write_file_meta_info"):
        if f"{name}(" not in _source(dimse_messages.DIMSEMessage.decode_msg):
            out.append(f"pynetdicom.dimse_messages.{name} (File Meta of a received file)")
    for name in ("STORE_RECV_CHUNKED_DATASET", "LOG_HANDLER_LEVEL", "VALIDATORS",
                 "ENFORCE_UID_CONFORMANCE", "CODECS"):
        if not hasattr(_config, name):
            out.append(f"pynetdicom._config.{name}")
    return out + _check_uid_checks() + _check_store_rsp()


def _check_store_rsp() -> list[str]:
    out = []
    table = getattr(dimse, "_RSP_TO_MESSAGE", {})
    if table.get(dimse_primitives.C_STORE) not in (dimse_messages.C_STORE_RSP,
                                                   pynetdicom_store_rsp.C_STORE_RSP):
        out.append("pynetdicom.dimse._RSP_TO_MESSAGE[C_STORE] (the C-STORE-RSP message class)")
    if not all(s in _source(dimse.DIMSEServiceProvider.send_msg) for s in (
            "_RSP_TO_MESSAGE[primitive.__class__]()", "primitive_to_message(primitive)",
            "encode_msg(context_id, self.maximum_pdu_size)")):
        out.append("pynetdicom.dimse.DIMSEServiceProvider.send_msg (builds and encodes the "
                   "response message)")
    if getattr(dimse_messages, "_COMMAND_SET_KEYWORDS", {}).get("C-STORE-RSP") != (
            "CommandGroupLength", "AffectedSOPClassUID", "CommandField",
            "MessageIDBeingRespondedTo", "CommandDataSetType", "Status",
            "AffectedSOPInstanceUID", "OffendingElement", "ErrorComment"):
        out.append("pynetdicom.dimse_messages._COMMAND_SET_KEYWORDS['C-STORE-RSP'] (the "
                   "elements of a C-STORE response)")
    return out


def encode_store_responses() -> None:
    """Send C-STORE responses through pynetdicom_store_rsp (process-wide; applied by the
    Portal AET at start, only when `missing()` found everything it relies on)."""
    if not _missing():
        dimse._RSP_TO_MESSAGE[dimse_primitives.C_STORE] = pynetdicom_store_rsp.C_STORE_RSP


# Where pynetdicom's negotiation imported `set_uid` (module globals it calls by name).
UID_CHECK_MODULES = (pdu_items, pdu_primitives, presentation)


def _check_uid_checks() -> list[str]:
    out = []
    source = _source(utils.set_uid)
    params = list(inspect.signature(utils.set_uid).parameters) if callable(
        getattr(utils, "set_uid", None)) else []
    if params != ["value", "name", "allow_empty", "allow_none", "validate"] or not all(
            s in source for s in ('_config.VALIDATORS["UI"]', "value.is_valid",
                                  "decode_bytes(value)")):
        out.append("pynetdicom.utils.set_uid(value, name, allow_empty, allow_none, validate) "
                   "(the UID check of negotiation)")
    for module in UID_CHECK_MODULES:
        current = getattr(module, "set_uid", None)
        if current is not utils.set_uid and not _is_memo(current):
            out.append(f"{module.__name__}.set_uid (imported from pynetdicom.utils)")
    add = presentation.PresentationContext.add_transfer_syntax
    source = _source(getattr(add, "__wrapped__", add))
    if not all(s in source for s in ("syntax not in self._transfer_syntax",
                                     "self._transfer_syntax.append(syntax)",
                                     "validate_uid(syntax)", "syntax.is_valid",
                                     "syntax.is_transfer_syntax")):
        out.append("pynetdicom.presentation.PresentationContext.add_transfer_syntax "
                   "(appends to _transfer_syntax)")
    return out


def _is_memo(func: object) -> bool:
    return isinstance(getattr(func, "__self__", None), pynetdicom_uids.UidMemo)


def memoise_uid_checks() -> None:
    """Check each UID of a negotiation once per process, not on every association
    (pynetdicom_uids.py). Process-wide; applied by the Portal AET at start, and only when
    `missing()` found everything it relies on."""
    if _missing() or _is_memo(presentation.set_uid):
        return
    add = presentation.PresentationContext.add_transfer_syntax
    memo = pynetdicom_uids.UidMemo(utils.set_uid, add)

    @functools.wraps(add)
    def add_transfer_syntax(self: Any, syntax: Any) -> None:
        memo.add_transfer_syntax(self, syntax)

    for module in UID_CHECK_MODULES:
        module.set_uid = memo.set_uid  # type: ignore[attr-defined]
    presentation.PresentationContext.add_transfer_syntax = (  # type: ignore[method-assign]
        add_transfer_syntax)


def _waits_available() -> bool:
    return not _missing()


def installed_version() -> str:
    return pynetdicom.__version__


class _HashingFile:
    """pynetdicom's temp file for one received dataset, hashed (SHA-256) as it is written.

    The hash is computed while the rest of the dataset is still on the wire (hashlib
    releases the GIL), instead of reading the finished file back before the response.
    Written unbuffered through its descriptor: a full disk (ENOSPC) is caught here, the
    rest of the dataset is read off the wire and dropped, and the C-STORE handler answers
    0xA700 (write_failure) instead of pynetdicom's receive thread dying mid-association.
    Opened while `room` says a receiving file system is short, it writes nothing at all."""

    def __init__(self, folder: Path, suffix: str = RECEIVING_SUFFIX,
                 room: Room | None = None):
        self.failure: str | None = room() if room is not None else None
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._fd: int | None = None
        try:
            fd, self.name = tempfile.mkstemp(suffix=suffix, dir=str(folder))
        except OSError as exc:
            self.name = str(folder / f"unwritten-{id(self)}{suffix}")
            self.failure = self.failure or f"cannot create a file in {folder}: {exc.strerror}"
            return
        self._fd = fd

    @property
    def file(self) -> _HashingFile:  # pynetdicom flushes through it after each PDV
        return self

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.failure is None and self._fd is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                self.failure = f"disk full receiving into {self.name}: {exc.strerror}"
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


# What `room` answers: None when every receiving file system has room, else the reason.
Room = Callable[[], "str | None"]

# Files being received, by path; an entry goes when pynetdicom drops its file object.
_receiving: weakref.WeakValueDictionary[str, _HashingFile] = weakref.WeakValueDictionary()


def receive_into(folder: Path, hashing: bool = True, suffix: str = RECEIVING_SUFFIX,
                 room: Room | None = None) -> None:
    """Receive datasets in chunks into temp files in `folder` (process-wide), hashed as they
    are written unless `hashing` is False (the bare-SCP benchmark); while `room` gives a
    reason, nothing is written (the C-STORE handler refuses it)."""
    _config.STORE_RECV_CHUNKED_DATASET = True  # datasets go to disk, not memory
    # pynetdicom's own per-PDU/per-message log handlers format info/debug lines that its
    # logger (held at WARNING, see logs.py) drops anyway; its warnings still log.
    _config.LOG_HANDLER_LEVEL = "none"

    def open_hashing(*_args: Any, **_kwargs: Any) -> _HashingFile:
        f = _HashingFile(folder, suffix, room)
        _receiving[f.name] = f
        return f

    def open_plain(*_args: Any, **_kwargs: Any) -> Any:
        return tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=suffix,
                                           dir=str(folder))

    if hasattr(dimse_messages, "NamedTemporaryFile"):
        dimse_messages.NamedTemporaryFile = open_hashing if hashing else open_plain
    if hashing and not isinstance(getattr(dimse_messages.create_file_meta, "__self__", None),
                                  FastFileMeta):
        meta = FastFileMeta(dimse_messages.create_file_meta,
                            dimse_messages.write_file_meta_info)
        dimse_messages.create_file_meta = meta.create
        dimse_messages.write_file_meta_info = meta.write


class FastFileMeta:
    """pynetdicom writes `write_file_meta_info(file, create_file_meta(...))` at the start of
    each received file: a pydicom FileMetaDataset built, validated and encoded (a tenth of
    the Portal AET's CPU on a large study). `create` keeps the values, `write` writes the
    same bytes (spool.file_meta_bytes); anything else goes to pydicom's own functions."""

    def __init__(self, create: Callable[..., Any], write: Callable[..., Any]):
        self._create, self._write = create, write

    def create(self, *, sop_class_uid: Any, sop_instance_uid: Any, transfer_syntax: Any,
               implementation_uid: Any = pynetdicom.PYNETDICOM_IMPLEMENTATION_UID,
               implementation_version: Any = pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION
               ) -> Any:
        data = file_meta_bytes(sop_class_uid, sop_instance_uid, transfer_syntax,
                               implementation_uid, implementation_version)
        if data is None:
            return self._create(sop_class_uid=sop_class_uid,
                                sop_instance_uid=sop_instance_uid,
                                transfer_syntax=transfer_syntax,
                                implementation_uid=implementation_uid,
                                implementation_version=implementation_version)
        return _MetaBytes(data)

    def write(self, fp: Any, file_meta: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(file_meta, _MetaBytes):
            fp.write(file_meta)
            return
        self._write(fp, file_meta, *args, **kwargs)


class _MetaBytes(bytes):
    """An encoded File Meta group, from FastFileMeta.create to FastFileMeta.write."""


def write_failure(path: Path) -> str | None:
    """Why a received dataset was not (wholly) written: a receiving file system short of
    space when it began, or full while it arrived; None when it was written."""
    f = _receiving.get(str(path))
    if f is None or f.failure is None:
        return None
    _receiving.pop(str(path), None)
    f.close()
    return f.failure


def digest_of(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of a received file if every byte of it went through _HashingFile."""
    f = _receiving.pop(str(path), None)
    if f is None:
        return None
    f.close()
    try:
        if path.stat().st_size != f.size:
            return None
    except OSError:
        return None
    return f.size, f.sha256.hexdigest()


def tune_connection(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler. Send each C-STORE response at once: with Nagle's algorithm the
    small responses meet the sender's delayed ACK and every instance stalls ~40 ms on a
    quiet link. Let the association's threads wait for work instead of polling for it."""
    d = event.assoc.dul
    no_delay(event.assoc)
    if _waits_available():
        pynetdicom_waits.wait_instead_of_polling(event.assoc, DUL_IDLE_SLEEP)
    elif hasattr(d, "_run_loop_delay"):
        d._run_loop_delay = DUL_IDLE_SLEEP




class SharedPortServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, bound with SO_REUSEPORT: each Portal AET process binds
    dicom.port and the kernel spreads incoming connections over them. (pynetdicom's
    server_bind sets only SO_REUSEADDR; a port held without SO_REUSEPORT, e.g. by a
    storescp, still refuses the bind.)"""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def skip_value_validation() -> None:
    """pydicom checks every value it reads against its VR in its default 'warn' mode: a
    regex per UID. A sender such as Orthanc proposes ~100 presentation contexts on each
    association, so decoding the A-ASSOCIATE-RQ alone ran ~500 of them, a fifth of the
    Portal AET's CPU with many small studies (bench/README.md, backlog). The warnings are
    logged nowhere; what a stored instance must satisfy, ingest.identify checks itself
    (UIDs, their length and characters), and pynetdicom still validates the UIDs it
    negotiates. Set only in the Portal AET's own process (scp_process.py): it is
    process-wide."""
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


class SharedContexts(list):
    """The Portal AET's accepted presentation contexts, built once. pynetdicom deep-copies
    the server's list for every incoming association (170 storage SOP classes x 21 syntaxes:
    ~50 ms of CPU per association, more than a small study's C-STOREs). Negotiation
    (pynetdicom.presentation.negotiate_as_acceptor) only reads them and builds new result
    contexts, so every association can share this one list."""

    def __deepcopy__(self, memo: dict) -> SharedContexts:
        return self


def adopt_server(ae: Any, server: ThreadedAssociationServer) -> None:
    """Register a server made with `ae.make_server` the way `start_server` does, so that
    `ae.shutdown()` and `ae.active_associations` include it."""
    ae._servers.append(server)


def set_syntaxes_checked_once(cx: Any, syntaxes: list[Any]) -> None:
    """Give a presentation context transfer syntaxes that are already validated UIDs: the
    public setter validates each one again (a regex per UID; a sender such as Orthanc
    proposes ~100 SOP classes x several syntaxes on every association)."""
    cx._transfer_syntax = list(syntaxes)


def wake_waiting(assoc: Any) -> None:
    """After `assoc.abort()` from another thread: a C-MOVE loop waits on the DIMSE queue for
    up to its DIMSE timeout and an abort does not wake it; an empty item does (read as
    'no response')."""
    assoc.dimse.msg_queue.put((None, None))


def no_delay(assoc: Any) -> None:
    """TCP_NODELAY on an association's socket (reached through its DUL provider)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
