"""SM3 and SM2 encryption written from the standards (GB/T 32905, GB/T 32918.4), for tests:
ciphertexts made here share no code with gmssl, as a Java BouncyCastle/Hutool sender would."""

from __future__ import annotations

import secrets
import struct

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
     0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0)

_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600,
       0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_M32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _M32


def _p0(x: int) -> int:
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x: int) -> int:
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


def sm3(msg: bytes) -> bytes:
    bits = len(msg) * 8
    msg = msg + b"\x80" + b"\x00" * ((55 - len(msg)) % 64) + struct.pack(">Q", bits)
    v = list(_IV)
    for off in range(0, len(msg), 64):
        w = list(struct.unpack(">16I", msg[off:off + 64]))
        for j in range(16, 68):
            w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7)
                     ^ w[j - 6])
        w1 = [w[j] ^ w[j + 4] for j in range(64)]
        a, b, c, d, e, f, g, h = v
        for j in range(64):
            t = 0x79CC4519 if j < 16 else 0x7A879D8A
            ss1 = _rotl((_rotl(a, 12) + e + _rotl(t, j)) & _M32, 7)
            ss2 = ss1 ^ _rotl(a, 12)
            ff = a ^ b ^ c if j < 16 else (a & b) | (a & c) | (b & c)
            gg = e ^ f ^ g if j < 16 else (e & f) | (~e & g)
            tt1 = (ff + d + ss2 + w1[j]) & _M32
            tt2 = (gg + h + ss1 + w[j]) & _M32
            d, c, b, a = c, _rotl(b, 9), a, tt1
            h, g, f, e = g, _rotl(f, 19), e, _p0(tt2)
        v = [x ^ y for x, y in zip(v, (a, b, c, d, e, f, g, h), strict=True)]
    return struct.pack(">8I", *v)


def kdf(z: bytes, klen: int) -> bytes:
    out = b""
    ct = 1
    while len(out) < klen:
        out += sm3(z + struct.pack(">I", ct))
        ct += 1
    return out[:klen]


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def mul(k: int, point):
    out = None
    while k:
        if k & 1:
            out = _add(out, point)
        point = _add(point, point)
        k >>= 1
    return out


def public_key(d: int):
    return mul(d, G)


def encrypt(pub, msg: bytes, order: str = "C1C3C2", k: int | None = None) -> bytes:
    """Raw ciphertext with the uncompressed-point prefix 04, as BouncyCastle emits it."""
    while True:
        k = k or secrets.randbelow(N - 1) + 1
        x1, y1 = mul(k, G)
        x2, y2 = mul(k, pub)
        xb, yb = x2.to_bytes(32, "big"), y2.to_bytes(32, "big")
        t = kdf(xb + yb, len(msg))
        if any(t):
            break
        k = None
    c1 = b"\x04" + x1.to_bytes(32, "big") + y1.to_bytes(32, "big")
    c2 = bytes(a ^ b for a, b in zip(msg, t, strict=True))
    c3 = sm3(xb + msg + yb)
    return c1 + c3 + c2 if order == "C1C3C2" else c1 + c2 + c3


def id_check_digit(first17: str) -> str:
    """GB 11643 / ISO 7064 MOD 11-2, computed the long way for the tests."""
    s = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(first17))
    return "10X98765432"[s % 11]
