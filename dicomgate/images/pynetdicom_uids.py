"""UID checks of an association's negotiation done once per UID, not once per association
(a part of pynetdicom_tuning.py, which applies it where the installed pynetdicom has what it
relies on).

A sender such as Orthanc proposes the same ~100 SOP classes x several transfer syntaxes on
every association. pynetdicom decodes each UID of the A-ASSOCIATE-RQ through
`utils.set_uid` (a validator call and a conformance regex), then again when it builds the
presentation contexts (`PresentationContext.abstract_syntax` and `add_transfer_syntax`:
two to three regexes per syntax), then again for each result context: ~12 % of the Portal
AET's GIL time with many small studies (bench/README.md).

UidMemo remembers a UID only once pynetdicom's own check passed it *without* a warning
(conformant, non-empty; for a transfer syntax also a transfer syntax or a private UID),
and answers a repeated value with what that check returned: the same UID, no log line, no
exception. Anything else (a first sight, a non-conformant or empty UID, None, another type)
goes to pynetdicom's own function, so its errors and warnings are unchanged. The memo is
emptied whenever a setting the check depends on (`_config.VALIDATORS["UI"]`,
`ENFORCE_UID_CONFORMANCE`, `CODECS`) changes, and holds at most LIMIT values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom import config as pydicom_config
from pydicom.uid import UID
from pynetdicom import _config

# Distinct UIDs remembered, at most: a sender's proposals are a few hundred; a peer
# proposing random UIDs only stops filling the memo, it never grows without bound.
LIMIT = 4096


class UidMemo:
    """Memoised stand-ins for pynetdicom's `utils.set_uid` and
    `PresentationContext.add_transfer_syntax` (both given as they were)."""

    def __init__(self, set_uid: Callable[..., Any], add_transfer_syntax: Callable[..., Any]):
        self._set_uid = set_uid
        self._add_transfer_syntax = add_transfer_syntax
        self._uids: dict[str | bytes, UID] = {}
        self._syntaxes: dict[str | bytes, UID] = {}
        self._settings: tuple[Any, ...] = ()

    def _current(self) -> None:
        """Forget everything when a setting pynetdicom's check depends on has changed."""
        now = (_config.VALIDATORS.get("UI"), _config.ENFORCE_UID_CONFORMANCE, _config.CODECS)
        if now != self._settings:
            self._uids, self._syntaxes, self._settings = {}, {}, now

    def set_uid(self, value: Any, name: str, allow_empty: bool = True,
                allow_none: bool = True, validate: bool = True) -> UID | None:
        kind = type(value)
        if kind is str or kind is bytes or kind is UID:
            self._current()
            known = self._uids.get(value)
            if known is not None:
                return known
        uid = self._set_uid(value, name, allow_empty, allow_none, validate)
        # Only a value that passed the full check without a warning is remembered: the
        # check then passes it again, whatever the name, emptiness or None arguments.
        if validate and uid and _quiet(value, uid) and len(self._uids) < LIMIT:
            self._uids[value] = uid
        return uid

    def add_transfer_syntax(self, cx: Any, syntax: Any) -> None:
        kind = type(syntax)
        if kind is str or kind is bytes or kind is UID:
            self._current()
            known = self._syntaxes.get(syntax)
            if known is not None:
                if known not in cx._transfer_syntax:
                    cx._transfer_syntax.append(known)
                return
        self._add_transfer_syntax(cx, syntax)  # raises and warns as pynetdicom does
        if kind is str or kind is bytes or kind is UID:
            uid = _quiet_syntax(syntax)
            if uid is not None and len(self._syntaxes) < LIMIT:
                self._syntaxes[syntax] = uid


def _quiet_syntax(syntax: str | bytes) -> UID | None:
    """The UID `add_transfer_syntax` made of `syntax` if it accepted it without a word
    (non-empty, conformant, a transfer syntax or private), else None."""
    try:
        text = syntax.decode("ascii") if isinstance(syntax, bytes) else syntax
        uid = UID(text, validation_mode=pydicom_config.IGNORE)  # pynetdicom's check spoke
    except (UnicodeDecodeError, ValueError):
        return None
    if uid and _quiet(syntax, uid) and (uid.is_private or uid.is_transfer_syntax):
        return uid
    return None


def _quiet(value: object, uid: UID) -> bool:
    """Whether `value` is exactly the conformant `uid`: pydicom warns about the value as
    given (padding included) before it strips it, pynetdicom about a non-conformant UID."""
    if type(value) is bytes:
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    return type(value) in (str, UID) and str.__eq__(value, uid) and uid.is_valid
