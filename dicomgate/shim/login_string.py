"""The login parameter string of spec 4.4.3.1 and its `$XX` encoding.

The PACS `encodeURI`-encodes Chinese values and replaces every `%` by `$`
(张医生 -> $E5$BC$A0$E5$8C$BB$E7$94$9F). The same string reaches us three ways: the plugin's
command line, a `WYHT://...` URL and `GET /hrball/?...`; `parse_login_string` takes any of
them. The spec's templates carry stray spaces (`&type=1 &doctorName=`, `& doctorSex=`), a
line break, and a broken `&{phoneNumber}=phoneNumber`: all tolerated here.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_ESCAPE = re.compile(r"(?:[$%][0-9A-Fa-f]{2})+")
_PLACEHOLDER = re.compile(r"^\$?\{(\w+)\}$")


class EncodingError(ValueError):
    pass


def dollar_decode(value: str) -> str:
    """`$XX` (and `%XX`, for a PACS that forgot to replace) -> bytes, then UTF-8."""
    def bytes_of(m: re.Match) -> str:
        raw = bytes(int(m.group(0)[i + 1:i + 3], 16) for i in range(0, len(m.group(0)), 3))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EncodingError("escapes do not decode as UTF-8 (expected encodeURI of "
                                "UTF-8 text with % replaced by $)") from None
    return _ESCAPE.sub(bytes_of, value)


def dollar_encode(value: str) -> str:
    """encodeURIComponent, then `%` -> `$` (so a literal `$` becomes `$24`: exact round trip)."""
    return quote(value, safe="-_.!~*'()").replace("%", "$")


def parse_login_string(text: str) -> dict[str, str]:
    """Parameters (still `$`-encoded) from any of the three integration styles."""
    s = text.strip()
    # Command line: "path/XXX.exe" "hisUserId=...": keep the argument holding the parameters.
    quoted = re.findall(r'"([^"]*)"', s)
    if quoted:
        s = next((q for q in quoted if "=" in q), s)
    s = re.sub(r"^\s*wyht://", "", s, flags=re.IGNORECASE)
    if "?" in s and "://" in s.split("?", 1)[0]:
        s = s.split("?", 1)[1]
    s = s.strip().strip('"').strip()
    out: dict[str, str] = {}
    for piece in re.split(r"&", s):
        piece = piece.strip()
        if not piece or "=" not in piece:
            continue
        key, value = (p.strip() for p in piece.split("=", 1))
        key, value = _repair(_decode_key(key), value)
        if key and key not in out:
            out[key] = value
    return out


def _decode_key(key: str) -> str:
    """Keys are ASCII, but an HTTP client may have percent-encoded the template's spaces
    and braces."""
    try:
        return dollar_decode(key).strip()
    except EncodingError:
        return key


def _repair(key: str, value: str) -> tuple[str, str]:
    """`{phoneNumber}=phoneNumber` (the spec's template), `13800138000=phoneNumber`,
    and unfilled `${x}` values."""
    m = _PLACEHOLDER.match(key)
    if m:
        key = m.group(1)
    if value == key == "phoneNumber" or _PLACEHOLDER.match(value):
        return key, ""
    if value == "phoneNumber" and re.fullmatch(r"\+?[\d\-]{5,20}", key):
        return "phoneNumber", key
    if m and value == m.group(1):
        return key, ""
    return key, value
