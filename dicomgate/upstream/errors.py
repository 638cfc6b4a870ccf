"""How a failed exchange with the cloud is treated: retry later, or refused for good."""

from __future__ import annotations

import email.utils
import time

import requests

# Our own configuration is wrong (credentials, URL): no instance is at fault, retry slowly.
CONFIG_STATUSES = {401: "the cloud refused our credentials (check upstream.auth / token / "
                        "hmac_key_id / hmac_secret)",
                   403: "the cloud forbids this gateway (check upstream credentials and the "
                        "cloud's registration of this hospital)",
                   404: "the cloud has no such endpoint (check upstream.dicomweb_url / api_url)",
                   405: "the cloud does not accept this method here (check upstream URLs)",
                   407: "a proxy wants authentication"}
CONFIG_RETRY = 600.0


class UpstreamError(Exception):
    pass


class Transient(UpstreamError):
    """Connection error, timeout, 5xx, 429, 408: try again later (after `retry_after`)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Refused(UpstreamError):
    """The cloud refused this content (4xx): retrying the same bytes cannot help."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped at one hour."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(3600.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(3600.0, max(0.0, when - time.time()))


def server_reason(r: requests.Response) -> str:
    """The server's own words: a JSON message if any, else the start of the body."""
    try:
        body = r.json()
        if isinstance(body, dict):
            for k in ("message", "error", "detail", "Message", "Details"):
                if isinstance(body.get(k), str) and body[k]:
                    return body[k][:300]
    except ValueError:
        pass
    text = (r.text or "").strip().replace("\n", " ")
    return text[:300] or (r.reason or "no reason given")


def check_status(r: requests.Response, what: str) -> None:
    """Raise for any non-2xx answer, classified; `what` names the exchange for the admin."""
    code = r.status_code
    if 200 <= code < 300:
        return
    if code in (408, 429) or code >= 500:
        raise Transient(f"{what}: HTTP {code} {server_reason(r)}",
                        retry_after(r.headers.get("Retry-After")))
    if code in CONFIG_STATUSES:
        raise Transient(f"{what}: HTTP {code}: {CONFIG_STATUSES[code]}; server said: "
                        f"{server_reason(r)}", CONFIG_RETRY)
    raise Refused(code, server_reason(r))


def from_exception(exc: requests.RequestException, what: str) -> Transient:
    if isinstance(exc, requests.exceptions.SSLError):
        return Transient(f"{what}: TLS failure ({_short(exc)}); check upstream.ca_bundle / "
                         "client_cert, or the cloud's certificate", CONFIG_RETRY)
    if isinstance(exc, requests.Timeout):
        return Transient(f"{what}: timed out ({_short(exc)})")
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return Transient(f"{what}: cannot connect ({_short(exc)})")
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return Transient(f"{what}: the connection dropped during the request; the cloud "
                         f"may or may not have acted on it ({_short(exc)})")
    return Transient(f"{what}: {type(exc).__name__}: {_short(exc)}")


def _never_connected(exc: requests.RequestException) -> bool:
    """Refused, unresolvable, unroutable: as opposed to a connection dropped mid-request."""
    text = str(exc)
    return any(w in text for w in ("NewConnectionError", "Failed to establish a new connection",
                                   "Name or service not known", "Temporary failure in name "
                                   "resolution", "No route to host", "Connection refused"))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
