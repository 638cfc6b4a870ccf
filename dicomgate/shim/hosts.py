"""Host and Origin allow-list (DNS rebinding): a page on evil.example whose name a resolver
points at this gateway reaches us with `Host: evil.example`; a browser sends the page's
`Origin`. Both must name this gateway: a configured name (`shim.host_names`), the address the
caller connected to, or, on loopback, `localhost`. Origin is compared with its scheme (the
front serves plain http). A request without Host (HTTP/1.0) or Origin is not a browser's."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..netaddr import client_ip

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class HostCheck:
    def __init__(self, names: tuple[str, ...]):
        self.names = frozenset(n.lower().rstrip(".") for n in names)

    def problem(self, headers: dict[str, str], local: str) -> str | None:
        """Why the request's Host or Origin is refused, or None."""
        host = headers.get("host")
        if host is not None and not self._ours(_hostname(host), local):
            return (f"Host {host[:80]!r} is not a name of this gateway (its address, or one of "
                    "shim.host_names)")
        origin = headers.get("origin")
        if origin is not None:
            parts = _origin(origin)
            if parts is None or parts[0] != "http" or not self._ours(parts[1], local):
                return (f"Origin {origin[:80]!r} is not this gateway (expected http:// and its "
                        "address or one of shim.host_names)")
        return None

    def _ours(self, name: str | None, local: str) -> bool:
        if not name:
            return False
        if name in self.names:
            return True
        addr, here = client_ip(name), client_ip(local)
        if addr is not None:
            return here is not None and (addr == here or (addr.is_loopback and
                                                          here.is_loopback))
        return name in LOOPBACK_NAMES and here is not None and here.is_loopback


def _hostname(value: str) -> str | None:
    """`name[:port]` or `[v6]:port` -> the name, lower case; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end <= 0 or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _origin(value: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(value.strip())
        name = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError:
        return None
    if not name or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.scheme.lower(), name.lower().rstrip(".")
