"""A response pynetdicom's association thread takes by mistake is handed back, not dropped.

pynetdicom (3.0) pauses an association's reactor thread before each request it sends: it
clears a checkpoint and waits until the reactor says it is paused. Right after the previous
operation set that checkpoint again, the reactor still says "paused" from before while it
is about to wake; the request goes out, the woken reactor takes the PACS's first response
off the DIMSE queue, finds it is not a request, logs "Received unexpected C-FIND service
message" and drops it. The operation then misses a match (a listing one instance short,
a study counted short) or its final response (it times out). Successive requests on one
association (PacsClient.session) hit this on about one session in ten against a local
Orthanc.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import Association


def keep_responses(assoc: Association) -> None:
    """On an association we requested: a response the reactor took while a request of ours
    waits (its checkpoint is cleared) goes back to the head of the DIMSE queue, where the
    waiting request reads it in order. Requests from the peer are served as before."""
    serve = assoc._serve_request

    def serve_or_hand_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request or assoc._reactor_checkpoint.is_set():
            serve(msg, context_id)  # nobody waits for it: pynetdicom's own handling
            return
        messages = assoc.dimse.msg_queue
        with messages.mutex:
            messages.queue.appendleft((context_id, msg))
            messages.unfinished_tasks += 1
            messages.not_empty.notify()

    assoc._serve_request = serve_or_hand_back  # type: ignore[method-assign]
