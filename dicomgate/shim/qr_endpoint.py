"""`GET /getway/reportAndFilm/api/qrurl` and `/qrcode` (spec 4.3)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import structlog

from .http import OK, Request, Response, reply
from .params import Params, no_chars
from .qr import SEPARATOR, ExamIdentity, FilmLinks
from .schema import Schema, text

log = structlog.get_logger("dicomgate.shim.qr")

QR_URL_PATH = "/getway/reportAndFilm/api/qrurl"
QR_CODE_PATH = "/getway/reportAndFilm/api/qrcode"
QR_CODE_COST = 50.0  # rate-limit tokens of a PNG (~17 ms of CPU; a URL ~0.2 ms + ~1 ms HTTP)

_NO_SEP = no_chars(SEPARATOR, "reserved as the token's field separator")


class QrQuery(Schema):
    """All three are required (spec 4.3)."""
    accessNumber: str = text("检查编号")
    modality: str = text("检查模式 (CT, MR, DX, ...)", 16)
    hospitalId: str = text("医保医疗机构代码")


class QrCodeQuery(QrQuery):
    caption: str = text("1: print 扫描查看数字影像 under the code", 8, required=False)


def _exam(req: Request, served: tuple[str, ...], schema: type[QrQuery] = QrQuery
          ) -> tuple[ExamIdentity, dict[str, str]]:
    fields, problems = req.fields(schema)
    p = Params(fields, served[0], served, problems)
    accession = p.required("accessNumber", "检查编号", check=_NO_SEP)
    modality = p.required("modality", "检查模式 (CT, MR, DX, ...)", 16, check=_NO_SEP)
    hospital = p.hospital(required=True)
    if SEPARATOR in hospital:
        p.add(f"hospitalId invalid: {_NO_SEP(hospital)}")
    p.done()
    req.context.update(accession_no=accession, modality=modality)
    return ExamIdentity(hospital, accession, modality.upper()), fields


class QrEndpoints:
    def __init__(self, links: FilmLinks, served: tuple[str, ...],
                 on_issue: Callable[[ExamIdentity], None] | None = None):
        self.links = links
        self.served = served  # the hospitalIds we issue codes for
        self.on_issue = on_issue  # records that the exam got its code (the console shows it)
        self._warned = False

    def _issued(self, exam: ExamIdentity) -> None:
        if self.on_issue is None:
            return
        try:
            self.on_issue(exam)
        except Exception as exc:  # bookkeeping only: the PACS still gets its code
            log.warning("qr.issue_not_recorded", accession_no=exam.accession_no,
                        error=str(exc))

    def qrurl(self, req: Request) -> Response:
        exam, _ = _exam(req, self.served)
        url = self.links.url(exam)
        self._issued(exam)
        return reply(OK, None, url)

    def qrcode(self, req: Request) -> Response:
        exam, fields = _exam(req, self.served, QrCodeQuery)
        self._issued(exam)
        caption = fields.get("caption", "") in ("1", "true", "yes")
        png, captioned = self.links.png(self.links.url(exam), caption)
        message = None
        if caption and not captioned:
            message = ("请求成功（未找到可用的中文字体，二维码下方未加说明文字；"
                       "请安装 fonts-wqy-microhei 或设置 qr.font_path）")
            if not self._warned:
                log.warning("qr.no_cjk_font", font=str(self.links.font_path),
                            hint="install fonts-wqy-microhei or set qr.font_path to a "
                                 "TrueType/OpenType CJK font")
                self._warned = True
        return reply(OK, message, base64.b64encode(png).decode("ascii"))
