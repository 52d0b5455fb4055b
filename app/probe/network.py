"""Name resolution and the outbound network policy (SSRF guard).

Mailbox rows come from users, so a host may point anywhere: cloud metadata (169.254.169.254),
the broker on localhost, the office LAN. The policy: resolve once, refuse the whole host if ANY
address is not public (unless an operator allow-listed its network), then connect only to the
addresses that were checked, never to the name again (no DNS-rebinding window).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.probe.errors import HostNotFound, ProbeError
from app.probe.model import ErrorCode, IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 NAT64 well-known prefix: the embedded IPv4 address is where packets really go.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """IP address strings for host, in preference order; raise HostNotFound if none."""
        ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo) off the event loop.

    One thread pool shared by every event loop of the process, so no loop starts its own.
    """

    def __init__(self, max_workers: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="probe-dns")

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.run_in_executor(
                self._pool, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:  # gaierror; UnicodeError for invalid IDNA labels
            raise HostNotFound(f"{host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise HostNotFound(f"{host}: no addresses")
        return addresses


class CachingResolver:
    """Another resolver's answers, kept per host for `ttl_seconds`.

    A job's mailboxes sit on a few providers' hosts (hundreds on smtp.gmail.com), so without
    it every probe asks the resolver again, two lookups per mailbox. getaddrinfo tells no TTL:
    a fixed, short one bounds how long a changed record goes unseen. Failures are not kept: a
    retry asks again. The answers are checked against the network policy on every use, as
    fresh ones are.
    """

    def __init__(self, inner: Resolver, ttl_seconds: float, max_hosts: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._max_hosts = max_hosts
        self._monotonic = monotonic
        self._answers: dict[str, tuple[float, list[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        key = host.lower()
        kept = self._answers.get(key)
        now = self._monotonic()
        if kept is not None and kept[0] > now:
            return list(kept[1])
        addresses = await self._inner.resolve(host, port)
        if len(self._answers) >= self._max_hosts:
            # The oldest answer goes first (dicts keep insertion order).
            self._answers.pop(next(iter(self._answers)), None)
        self._answers.pop(key, None)
        self._answers[key] = (now + self._ttl, list(addresses))
        return addresses


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address if host is an IP literal ("[::1]" included), else None."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really delivers to, for the translation formats."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not _is_public(inner):
            return False
        if ip.ipv4_mapped is not None or ip in _NAT64:
            return True  # reserved as IPv6, but only the (public) IPv4 inside matters
        if ip.is_site_local:
            return False
    # is_global alone misses multicast (224/4 and ff0e:: count as global).
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )


def _in_allowed(ip: IPAddress, allow: Iterable[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1 on a dual-stack socket
    return any(c.version == net.version and c in net for c in candidates for net in allow)


def is_allowed(ip: IPAddress, allow: Iterable[IPNetwork] = ()) -> bool:
    """True if the policy lets the probe connect to ip."""
    return _is_public(ip) or _in_allowed(ip, allow)


def blocked_addresses(addresses: Iterable[str], allow: Iterable[IPNetwork] = ()) -> list[str]:
    """The addresses the policy refuses; an unparsable address counts as refused."""
    allow = tuple(allow)
    blocked = []
    for text in addresses:
        ip = parse_ip_literal(text.split("%")[0])
        if ip is None or not is_allowed(ip, allow):
            blocked.append(text)
    return blocked


def connect_address(text: str) -> str:
    """The address to dial: IPv4-mapped IPv6 as plain IPv4, which works without dual stack."""
    ip = parse_ip_literal(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return text


async def resolve_allowed(
    host: str, port: int, resolver: Resolver, allow: Iterable[IPNetwork] = ()
) -> list[str]:
    """Addresses to connect to, in order; ProbeError(host_blocked) if any is not allowed."""
    literal = parse_ip_literal(host)
    addresses = [str(literal)] if literal is not None else await resolver.resolve(host, port)
    if not addresses:
        raise HostNotFound(f"{host}: no addresses")
    blocked = blocked_addresses(addresses, allow)
    if blocked:
        raise ProbeError(
            ErrorCode.HOST_BLOCKED,
            f"{host} resolves to a non-public address ({', '.join(blocked[:3])}): "
            "refused by the network policy",
        )
    return [connect_address(a) for a in addresses]
