"""Recognise a mailbox's provider from its domain's MX records, for rows that name no server."""

from __future__ import annotations

import threading
from typing import Protocol

import dns.exception
import dns.resolver


class MxResolver(Protocol):
    def mx_hosts(self, domain: str) -> list[str]:
        """The domain's mail exchangers, most preferred first; empty when there are none or the
        lookup failed."""
        ...


class DnsMxResolver:
    """Real DNS, with a short time limit because validation runs inside an HTTP request.

    Answers, failures included, are cached per domain for the resolver's lifetime, so a request
    with thousands of rows on one domain does one lookup, and an unreachable domain costs the
    time limit once, not once per row. Nothing expires: make one per request or job.
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._cache: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def mx_hosts(self, domain: str) -> list[str]:
        domain = domain.lower()
        with self._lock:
            cached = self._cache.get(domain)
        if cached is None:
            # Looked up outside the lock so one slow domain does not hold up the others.
            cached = self._lookup(domain)
            with self._lock:
                self._cache[domain] = cached
        return list(cached)

    def _lookup(self, domain: str) -> tuple[str, ...]:
        try:
            answer = self._resolver.resolve(domain, "MX", search=False)
        except dns.exception.DNSException:  # no such domain, no MX, timeout, no server
            return ()
        records = sorted(answer, key=lambda record: record.preference)
        hosts = (record.exchange.to_text().rstrip(".").lower() for record in records)
        return tuple(host for host in hosts if host)  # a null MX (RFC 7505) is "."


# (provider, host suffixes matched on label boundaries), checked in this order.
_MX_SUFFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gsuite", ("google.com", "googlemail.com")),  # aspmx.l.google.com, smtp.google.com
    ("microsoft", ("mail.protection.outlook.com",)),
    ("zoho", ("zoho.com", "zoho.eu", "zoho.in")),
    ("yahoo", ("yahoodns.net",)),
    ("yandex", ("yandex.net", "yandex.ru", "yandex.com")),
    ("godaddy", ("secureserver.net",)),
)


def provider_of_mx(host: str) -> str | None:
    host = host.lower().rstrip(".")
    if host.startswith("mx.zoho."):  # Zoho's other data centres: mx.zoho.com.au, mx.zoho.jp
        return "zoho"
    for provider, suffixes in _MX_SUFFIXES:
        if any(host == suffix or host.endswith("." + suffix) for suffix in suffixes):
            return provider
    return None


def detect_provider(domain: str, mx: MxResolver) -> str | None:
    """The provider of the most preferred MX host we recognise, or None."""
    for host in mx.mx_hosts(domain):
        provider = provider_of_mx(host)
        if provider is not None:
            return provider
    return None
