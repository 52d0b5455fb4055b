"""HTTP to addresses users gave us, under the outbound network policy (SSRF guard).

Webhook callbacks and autoconfig files live at URLs that come from users (a callback URL, an
email's domain), so a request may point anywhere: cloud metadata, the broker on localhost, the
office LAN. As for the probes (app/probe/network.py): resolve once, refuse the host if ANY
address is not public (unless an operator allow-listed its network), and connect to the
checked address, never to the name again (no DNS-rebinding window). TLS is still verified for
the name.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.probe.model import IPNetwork
from app.probe.network import blocked_addresses, connect_address, parse_ip_literal

# host, port -> the host's IP address strings, in preference order (OSError when none).
AddressResolver = Callable[[str, int], list[str]]


def system_addresses(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class OutboundError(Exception):
    """The request could not be made or finished. `blocked`: the policy refused the host
    (trying again cannot help)."""

    def __init__(self, message: str, blocked: bool = False) -> None:
        super().__init__(message)
        self.blocked = blocked


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def checked_addresses(host: str, port: int, allow: Iterable[IPNetwork] = (),
                      resolve: AddressResolver = system_addresses) -> list[str]:
    """Where host may be dialled; OutboundError when it does not resolve or the policy
    refuses any of its addresses."""
    literal = parse_ip_literal(host)
    try:
        addresses = [str(literal)] if literal is not None else resolve(host, port)
    except (OSError, UnicodeError) as exc:  # UnicodeError: an invalid IDNA label
        raise OutboundError(f"{host}: cannot resolve ({exc})") from None
    if not addresses:
        raise OutboundError(f"{host}: no addresses")
    blocked = blocked_addresses(addresses, allow)
    if blocked:
        raise OutboundError(f"host_blocked: {host} resolves to a non-public address "
                            f"({', '.join(blocked[:3])}): refused by the network policy",
                            blocked=True)
    return [connect_address(a) for a in addresses]


def http_request(method: str, url: str, *, timeout: float, body: bytes | None = None,
                 headers: dict[str, str] | None = None, allow: Iterable[IPNetwork] = (),
                 max_bytes: int = 65536, resolve: AddressResolver = system_addresses,
                 context: ssl.SSLContext | None = None, connect_timeout: float | None = None,
                 truncate: bool = False) -> HttpAnswer:
    """One request under the policy; redirects are returned, never followed.

    `timeout` bounds the whole exchange, however slowly a server drips its answer;
    `connect_timeout` (at most `timeout`) bounds each connection attempt, so that one
    unreachable address leaves time for the next. A body over `max_bytes` is an error, or
    with `truncate` cut there (for callers that only want the status).
    """
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError(f"{url}: not an http or https URL", blocked=True)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = checked_addresses(host, port, allow, resolve)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last: Exception | None = None
    for address in addresses[:3]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            sock = socket.create_connection((address, port),
                                            timeout=min(left, connect_timeout or left))
        except OSError as exc:  # refused, unreachable, timed out
            last = exc
            continue
        return _exchange(sock, parts.scheme, host, port, method, target, body, headers or {},
                         deadline, max_bytes, context, truncate)
    raise OutboundError(f"{host}: {type(last).__name__}: {last}" if last
                        else f"{host}: timed out")


def _exchange(sock: socket.socket, scheme: str, host: str, port: int, method: str,
              target: str, body: bytes | None, headers: dict[str, str], deadline: float,
              max_bytes: int, context: ssl.SSLContext | None, truncate: bool) -> HttpAnswer:
    # A socket timeout bounds each read, not the whole answer: at the deadline a watchdog
    # shuts the socket (the TLS one once wrapped: wrapping detaches the plain one), which
    # ends any read in progress.
    held = [sock]
    fired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (held, fired))
    watchdog.daemon = True
    watchdog.start()
    connection: http.client.HTTPConnection
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        if scheme == "https":
            context = context or ssl.create_default_context()
            # The checked address, and the certificate verified for the name.
            sock = held[0] = context.wrap_socket(sock, server_hostname=host)
            connection = http.client.HTTPSConnection(host, port, context=context)
        else:
            connection = http.client.HTTPConnection(host, port)
        connection.sock = sock  # http.client sends on it instead of dialling the name again
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(max_bytes + 1)
        if fired.is_set():  # what was read before the cut may look whole: it is not
            raise OutboundError(f"{host}: timed out")
        if len(data) > max_bytes and not truncate:
            raise OutboundError(f"{host}: the answer is larger than {max_bytes} bytes")
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          data[:max_bytes])
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
        if fired.is_set() or time.monotonic() >= deadline:
            raise OutboundError(f"{host}: timed out") from None
        raise OutboundError(f"{host}: {type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        sock.close()


def _shut(held: list[socket.socket], fired: threading.Event) -> None:
    fired.set()
    try:
        socket.socket.shutdown(held[0], socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def post_checked(url: str, body: bytes, headers: dict[str, str], timeout: float,
                 allow: Iterable[IPNetwork] = (), max_answer: int = 65536,
                 truncate: bool = False) -> tuple[int, bytes]:
    """POST under the outbound network policy (webhooks, OAuth token requests); the
    answer's status code and up to `max_answer` bytes of its body. DeliveryError says why
    nothing was answered, and whether trying again may help."""
    try:
        answer = http_request("POST", url, body=body, headers=headers, timeout=timeout,
                              allow=allow, max_bytes=max_answer, truncate=truncate)
    except OutboundError as exc:
        # A refused address stays refused; anything else (DNS, connection) may recover.
        raise DeliveryError(str(exc), retryable=not exc.blocked) from None
    return answer.status, answer.body
