"""Images: the Portal AET storage SCP, PACS echo, C-FIND/C-MOVE retrieve, HTTP image mode.

The public surface the CLI uses; the rest of the package is the feature's own business.
"""

from .ingest import Ingest
from .retrieve import MoveProgress, Retriever, present_sop_uids
from .scp import StorageSCP
from .scu import PacsClient, PacsRefused, PacsUnavailable
from .spool import Spool
from .wiring import Images, build

__all__ = ["Images", "Ingest", "MoveProgress", "PacsClient", "PacsRefused", "PacsUnavailable",
           "Retriever", "Spool", "StorageSCP", "build", "present_sop_uids"]
