"""What failed when no HTTP answer came back: a name, TLS, a refused connection, a timeout, a dropped line."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx

_DNS_WORDS = ("name or service not known", "nodename nor servname", "getaddrinfo", "no address associated")
_TLS_WORDS = ("ssl", "certificate", "tls", "handshake")
_REFUSED_WORDS = ("connection refused", "errno 111", "errno 61", "actively refused")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connect_failure(exc: httpx.TransportError, where: str) -> str:
    causes = list(_chain(exc))
    text = " ".join(str(cause) for cause in causes).lower()
    if any(isinstance(c, socket.gaierror) for c in causes) or any(w in text for w in _DNS_WORDS):
        return f"DNS name not found: {where.rsplit(':', 1)[0]} does not resolve (check the host name in the URL)"
    if any(isinstance(c, ssl.SSLError) for c in causes) or any(w in text for w in _TLS_WORDS):
        reason = next((c.reason for c in causes if isinstance(c, ssl.SSLError) and c.reason), None)
        return (
            f"TLS failure with {where}{f' ({reason})' if reason else ''}: the certificate or the TLS handshake failed"
        )
    if any(isinstance(c, ConnectionRefusedError) for c in causes) or any(w in text for w in _REFUSED_WORDS):
        return f"connection refused by {where}: nothing listens there"
    return f"could not connect to {where} ({type(exc).__name__})"


def describe_transport_error(exc: httpx.TransportError, url: httpx.URL, timeout: float) -> str:
    """One plain sentence for the error a tool shows, instead of "HTTP 0"."""
    where = f"{url.host}:{url.port or {'https': 443, 'http': 80}.get(url.scheme, '')}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: connecting to {where} took too long"
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return f"timeout: no answer from {where} within {timeout:g} s"
    if isinstance(exc, httpx.PoolTimeout):
        return "timeout: no free connection in this server's pool"
    if isinstance(exc, httpx.ConnectError):
        return _connect_failure(exc, where)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"the connection to {where} dropped before an answer came"
    return f"{type(exc).__name__} talking to {where}"
