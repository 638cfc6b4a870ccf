"""QR code film link (spec 4.3): the SM4 token, the URL, the PNG with its caption.

Token format (the cloud decrypts it): UTF-8 `hospitalId|accessionNo|modality`, SM4-ECB with
PKCS#7 padding under `qr.sm4_key`, standard base64, then percent-encoded in the URL so that
`+`, `/` and `=` survive query-string parsing. ECB keeps it deterministic: the same exam always
prints the same link, before or after its report is synced. The cipher and mode are the
cloud's (its decryptor, the spec's 32-byte sample with no IV): tokens whose first 16 plain
bytes are equal (hospital code, `|`, three accession characters) share their first block.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import segno

from ..smcrypto import GmError, Sm4Ecb

CAPTION = "扫描查看数字影像"
SEPARATOR = "|"
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
)


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class ExamIdentity:
    hospital_id: str
    accession_no: str
    modality: str


class FilmLinks:
    def __init__(self, film_url: str, sm4_key: bytes, font_path: Path | None = None):
        self.film_url = film_url
        self._sm4 = Sm4Ecb(sm4_key)
        self.font_path = font_path or next((p for p in FONT_CANDIDATES if p.exists()), None)
        self.url = functools.lru_cache(maxsize=4096)(self._url)
        self.png = functools.lru_cache(maxsize=256)(self._png)

    def token(self, exam: ExamIdentity) -> str:
        plain = SEPARATOR.join((exam.hospital_id, exam.accession_no, exam.modality))
        return base64.b64encode(self._sm4.encrypt(plain.encode("utf-8"))).decode("ascii")

    def _url(self, exam: ExamIdentity) -> str:
        sep = "&" if urlsplit(self.film_url).query else "?"
        return f"{self.film_url}{sep}info={quote(self.token(exam), safe='')}"

    def decode(self, text: str) -> ExamIdentity:
        """A token, as sent in the URL (percent-encoded or not), or the whole URL."""
        token = _token_from(text.strip())
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            plain = self._sm4.decrypt(raw).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            reason = str(exc) if isinstance(exc, GmError) else "not base64 of an SM4 block"
            raise TokenError(f"token cannot be decrypted: {reason}") from None
        parts = plain.split(SEPARATOR)
        if len(parts) != 3:
            raise TokenError(f"token decrypts to {len(parts)} fields, expected 3 "
                             "(hospitalId|accessionNo|modality)")
        return ExamIdentity(*parts)

    def _png(self, url: str, caption: bool) -> tuple[bytes, bool]:
        """PNG bytes and whether the caption is in it (it needs a CJK font)."""
        qr = segno.make(url, error="m", micro=False)
        buf = io.BytesIO()
        qr.save(buf, kind="png", scale=8, border=4)
        if not caption or self.font_path is None:
            return buf.getvalue(), False
        try:
            return _with_caption(buf.getvalue(), self.font_path), True
        except OSError:  # not a font file (qr.font_path mistyped): the code still prints
            return buf.getvalue(), False


def _token_from(text: str) -> str:
    if "info=" in text:
        query = urlsplit(text).query if "://" in text else text.split("?", 1)[-1]
        values = parse_qs(query.replace("+", "%2B")).get("info")
        if not values:
            raise TokenError("no info= parameter in the URL")
        text = values[0]
    elif "%" in text:
        text = unquote(text)
    # A raw token pasted through a query string may have lost its `+` to a space.
    return text.replace(" ", "+")


def _with_caption(png: bytes, font_path: Path) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    qr = Image.open(io.BytesIO(png)).convert("L")
    size = max(16, qr.width // 12)
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(CAPTION)
    pad = size // 2
    canvas = Image.new("L", (max(qr.width, right - left + 2 * pad),
                             qr.height + bottom - top + 2 * pad), 255)
    canvas.paste(qr, ((canvas.width - qr.width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text(((canvas.width - (right - left)) // 2 - left, qr.height + pad // 2 - top),
              CAPTION, fill=0, font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()
