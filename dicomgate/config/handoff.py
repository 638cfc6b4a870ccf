"""A parsed configuration handed to a child process (the Portal AET's), so that it runs on
exactly the settings the daemon parsed at start, never on a re-read of the file: after an
edit without a restart, a crash-restarted child would otherwise run other settings than
the daemon that supervises it.

The frozen objects travel pickled over the child's stdin (a private pipe between two
processes of the service user, secrets included), length first.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import IO

from .model import Config

_LENGTH = struct.Struct(">I")
MAX_BYTES = 1 << 20  # a configuration is a few KB: anything larger is not one


class HandoffError(Exception):
    """The configuration did not arrive; the message says what came instead."""


def send(config: Config, stream: IO[bytes]) -> None:
    data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def receive(fd: int) -> Config:
    """Read the configuration `send` wrote to `fd` (the rest of the stream stays unread)."""
    (size,) = _LENGTH.unpack(_read(fd, _LENGTH.size))
    if size > MAX_BYTES:
        raise HandoffError(f"expected a configuration of at most {MAX_BYTES} bytes, "
                           f"got a length of {size}")
    config = pickle.loads(_read(fd, size))  # from our own parent, over a private pipe
    if not isinstance(config, Config):
        raise HandoffError(f"expected a Config, got {type(config).__name__}")
    return config


def _read(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise HandoffError(f"the stream ended after {len(out)} of {n} bytes: the daemon "
                               "went away before sending the configuration")
        out += chunk
    return out
