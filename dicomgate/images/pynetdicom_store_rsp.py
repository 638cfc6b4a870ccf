"""The C-STORE-RSP the Portal AET sends after each instance, encoded straight to bytes (a
part of pynetdicom_tuning.py, which applies it where the installed pynetdicom has what it
relies on).

pynetdicom builds each response as a pydicom Dataset of the command set, encodes it once to
measure its group length and again to send it: a sixth of the Portal AET's GIL time on a
large study (bench/README.md). A response carrying only what ours carry (message ID,
status, SOP class and instance UIDs: no error comment, no offending element) is written
here as the same Implicit VR Little Endian bytes; any other response, and anything asking
for the message's `command_set`, goes through pynetdicom's own class.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from pynetdicom import dimse_messages
from pynetdicom.pdu_primitives import P_DATA

_US = struct.Struct("<HHIH")  # group, element, length 2, value


def _ui(element: int, uid: str) -> bytes | None:
    """(0000,element) UI as pydicom writes it (padded with NUL to an even length), or None
    when it cannot be written as plain ASCII."""
    try:
        value = uid.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0, element, len(value)) + value


def command_bytes(primitive: Any) -> bytes | None:
    """The encoded command set of a C-STORE-RSP for `primitive`, or None when it carries
    anything but message ID, status and the two UIDs (pynetdicom then encodes it)."""
    message_id, status = primitive.MessageIDBeingRespondedTo, primitive.Status
    sop_class, sop_instance = primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID
    if (primitive.ErrorComment is not None or primitive.OffendingElement is not None
            or type(message_id) is not int or type(status) is not int
            or not 0 <= message_id <= 0xFFFF or not 0 <= status <= 0xFFFF
            or not sop_class or not sop_instance):
        return None
    first, last = _ui(0x0002, sop_class), _ui(0x1000, sop_instance)
    if first is None or last is None:
        return None
    body = b"".join((first, _US.pack(0, 0x0100, 2, 0x8001), _US.pack(0, 0x0120, 2, message_id),
                     _US.pack(0, 0x0800, 2, 0x0101), _US.pack(0, 0x0900, 2, status), last))
    return struct.pack("<HHII", 0, 0x0000, 4, len(body)) + body


class C_STORE_RSP(dimse_messages.C_STORE_RSP):  # noqa: N801 (pynetdicom reads the name)
    """pynetdicom's C-STORE-RSP message with the command set encoded by command_bytes."""

    def __init__(self) -> None:
        self.context_id: int | None = None
        self._primitive: Any = None
        self._encoded: bytes | None = None
        self._full: dimse_messages.C_STORE_RSP | None = None

    def primitive_to_message(self, primitive: Any) -> None:
        self._primitive = primitive
        self._encoded = command_bytes(primitive)

    def _pynetdicoms(self) -> dimse_messages.C_STORE_RSP:
        if self._full is None:
            self._full = dimse_messages.C_STORE_RSP()
            self._full.primitive_to_message(self._primitive)
        return self._full

    def __getattr__(self, name: str) -> Any:  # command_set, data_set, ...: pynetdicom's
        if name.startswith("_") and name in ("_full", "_primitive", "_encoded"):
            raise AttributeError(name)
        return getattr(self._pynetdicoms(), name)

    def encode_msg(self, context_id: int, max_pdu_length: int) -> Iterator[P_DATA]:
        data = self._encoded
        if data is None or (max_pdu_length and len(data) + 6 > max_pdu_length):
            yield from self._pynetdicoms().encode_msg(context_id, max_pdu_length)
            return
        self.context_id = context_id
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, b"\x03" + data))
        yield pdata
