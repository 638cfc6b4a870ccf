"""SM2 / SM4 adapters over gmssl (GB/T 32918, GB/T 32907).

gmssl 3.2.2's `CryptSM2.decrypt` never checks C3 and raises TypeError on a C1 that is not
on the curve, so decryption is assembled here from gmssl's primitives (point multiplication,
SM3, KDF) with the standard's checks: C1 on the curve, C3 = SM3(x2 || M || y2) compared in
constant time. Ciphertexts are accepted as Java BouncyCastle / Hutool emit them (hex, `04`
prefix, C1C3C2) and in the other common spellings (base64, no prefix, C1C2C3, ASN.1 DER).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re

from Cryptodome.Util.asn1 import DerInteger, DerOctetString, DerSequence
from gmssl import sm2, sm3, sm4

_CURVE = sm2.default_ecc_table
_P = int(_CURVE["p"], 16)
_A = int(_CURVE["a"], 16)
_B = int(_CURVE["b"], 16)
_N = int(_CURVE["n"], 16)
MODES = ("C1C3C2", "C1C2C3")


class GmError(ValueError):
    """A key, token or ciphertext is unusable; the message says what is wrong."""


# --- SM4 ----------------------------------------------------------------------------------

class Sm4Ecb:
    """SM4-ECB with PKCS#7 padding: deterministic, so one exam always gives one token."""

    def __init__(self, key: bytes):
        if len(key) != 16:
            raise GmError(f"SM4 key is {len(key)} bytes, expected 16 (32 hex digits)")
        self._enc = sm4.CryptSM4(sm4.SM4_ENCRYPT)
        self._enc.set_key(key, sm4.SM4_ENCRYPT)
        self._dec = sm4.CryptSM4(sm4.SM4_DECRYPT, padding_mode=None)  # padding checked here
        self._dec.set_key(key, sm4.SM4_DECRYPT)

    def encrypt(self, plain: bytes) -> bytes:
        return bytes(self._enc.crypt_ecb(plain))

    def decrypt(self, cipher: bytes) -> bytes:
        if not cipher or len(cipher) % 16:
            raise GmError(f"SM4 ciphertext is {len(cipher)} bytes, expected a non-zero "
                          "multiple of 16")
        block = bytes(self._dec.crypt_ecb(cipher))
        # gmssl strips padding without checking it: a wrong key must not pass silently.
        pad = block[-1]
        if not 1 <= pad <= 16 or block[-pad:] != bytes([pad]) * pad:
            raise GmError("SM4 padding is wrong: not encrypted with this key, or damaged")
        return block[:-pad]


# --- SM2 ----------------------------------------------------------------------------------

def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < _P and 0 <= y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0


def decode_text(text: str) -> bytes:
    """Hex (either case) or base64 (standard or URL-safe) -> bytes."""
    t = re.sub(r"\s+", "", text)
    if not t:
        raise GmError("empty ciphertext")
    if re.fullmatch(r"[0-9a-fA-F]+", t) and len(t) % 2 == 0:
        return bytes.fromhex(t)
    try:
        t = t.replace("-", "+").replace("_", "/")
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise GmError("ciphertext is neither hex nor base64") from None


class Sm2Decryptor:
    def __init__(self, private_key_hex: str, mode: str = "C1C3C2"):
        if mode not in MODES:
            raise GmError(f"SM2 mode {mode!r}, expected one of {', '.join(MODES)}")
        try:
            d = int(private_key_hex, 16)
        except ValueError:
            raise GmError("SM2 private key is not hex (expected 64 hex digits)") from None
        if not 1 <= d < _N - 1:
            raise GmError("SM2 private key is out of range for the SM2 curve")
        self.mode = mode
        self._d = d
        self._sm2 = sm2.CryptSM2(private_key=f"{d:064x}", public_key="")
        self.public_key_hex = "04" + self._sm2._kg(d, _CURVE["g"])

    def decrypt(self, data: bytes) -> tuple[bytes, str]:
        """Plaintext and the byte order it was found in (the configured one first)."""
        c1, rest = _split_c1(data)
        xy = self._sm2._kg(self._d, c1)
        if xy is None:
            raise GmError("SM2 ciphertext C1 is not a usable point")
        x2, y2 = bytes.fromhex(xy[:64]), bytes.fromhex(xy[64:])
        order = (self.mode, *[m for m in MODES if m != self.mode])
        for mode in order:
            c3, c2 = (rest[:32], rest[32:]) if mode == "C1C3C2" else (rest[-32:], rest[:-32])
            plain = _xor_kdf(c2, xy)
            if hmac.compare_digest(_sm3(x2 + plain + y2), c3):
                return plain, mode
        raise GmError("SM2 ciphertext fails its integrity check (C3): corrupted, or "
                      "encrypted for another key")


def _split_c1(data: bytes) -> tuple[str, bytes]:
    """C1 as gmssl's 128-hex-digit point and the rest (C3 and C2 in either order)."""
    der = _from_der(data)
    if der is not None:
        return der
    candidates = [data[1:]] if data[:1] == b"\x04" else []
    candidates.append(data)
    for body in candidates:
        if len(body) < 64 + 32 + 1:
            continue
        x, y = int.from_bytes(body[:32], "big"), int.from_bytes(body[32:64], "big")
        if _on_curve(x, y):
            return body[:64].hex(), body[64:]
    if len(data) < 64 + 32 + 1:
        raise GmError(f"SM2 ciphertext is {len(data)} bytes, too short (at least 97: "
                      "C1 64 + C3 32 + data)")
    raise GmError("SM2 ciphertext C1 is not a point on the SM2 curve: not an SM2 ciphertext, "
                  "or damaged")


def _from_der(data: bytes) -> tuple[str, bytes] | None:
    """GM/T 0009 ASN.1 (OpenSSL, GmSSL): SEQUENCE {x, y, hash, ciphertext}, as C1 + C3C2."""
    if data[:1] != b"\x30":
        return None
    try:
        seq = DerSequence().decode(data, strict=True)
        x, y = int(seq[0]), int(seq[1])
        c3 = DerOctetString().decode(seq[2]).payload
        c2 = DerOctetString().decode(seq[3]).payload
    except (ValueError, IndexError, TypeError):
        return None
    if len(seq) != 4 or len(c3) != 32 or not _on_curve(x, y):
        return None
    return f"{x:064x}{y:064x}", c3 + c2


def to_der(c1_hex: str, c3: bytes, c2: bytes) -> bytes:
    """The ASN.1 form (used by tests and the CLI to show what OpenSSL would send)."""
    x, y = int(c1_hex[:64], 16), int(c1_hex[64:128], 16)
    return DerSequence([DerInteger(x), DerInteger(y), DerOctetString(c3),
                        DerOctetString(c2)]).encode()


def _sm3(data: bytes) -> bytes:
    return bytes.fromhex(sm3.sm3_hash(list(data)))


def _xor_kdf(c2: bytes, xy_hex: str) -> bytes:
    if not c2:
        raise GmError("SM2 ciphertext carries no data (C2 is empty)")
    t = bytes.fromhex(sm3.sm3_kdf(xy_hex.encode(), len(c2)))
    if not any(t):
        raise GmError("SM2 KDF output is all zero: invalid ciphertext")
    return bytes(a ^ b for a, b in zip(c2, t, strict=True))
