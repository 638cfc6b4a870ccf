"""A bare pynetdicom storage SCP with dicomgate's settings and a handler that does nothing:
the ceiling for dicomgate's Portal AET on this host (pynetdicom's receive path alone).

    python bench/bare_scp.py PORT AE_TITLE SPOOL_DIR

Same contexts, chunked receive into SPOOL_DIR, TCP_NODELAY and DUL idle sleep as
`dicomgate run`; each C-STORE is answered 0x0000 and pynetdicom deletes the file.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicomgate.images import pynetdicom_tuning
from dicomgate.images.scp import TRANSFER_SYNTAXES


def main() -> int:
    port, aet, spool = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    spool.mkdir(parents=True, exist_ok=True)
    pynetdicom_tuning.receive_into(spool, hashing=False)
    ae = AE(ae_title=aet)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    ae.maximum_pdu_size = 0
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda _e: 0x0000),
        (evt.EVT_CONN_OPEN, pynetdicom_tuning.tune_connection)])
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
