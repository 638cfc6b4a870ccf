"""The HTTP endpoints the hospital PACS calls (spec 4.3-4.5): QR code, doctor login sync,
cross-hospital lookup, image deletion.

The public surface the CLI uses; the rest of the package is the feature's own business.
"""

from .login import decode_login
from .login_string import parse_login_string
from .params import ParamError
from .qr import ExamIdentity, FilmLinks, TokenError

__all__ = ["ExamIdentity", "FilmLinks", "ParamError", "TokenError", "decode_login",
           "parse_login_string"]
