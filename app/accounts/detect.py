"""Recognise a mailbox's provider from its domain's MX records, for rows that name no server."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import dns.exception
import dns.resolver


class MxResolver(Protocol):
    def mx_hosts(self, domain: str) -> list[str]:
        """The domain's mail exchangers, most preferred first; empty when there are none or the
        lookup failed."""
        ...


class DnsMxResolver:
    """Real DNS, with a short time limit.

    Answers, failures included, are cached per domain for the resolver's lifetime, so a job
    with thousands of rows on one domain does one lookup, and an unreachable domain costs the
    time limit once, not once per row. Threads asking for a domain that is being looked up wait
    for that lookup instead of starting their own. Nothing expires: make one per request or
    job (JobMxCache).
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._cache: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def mx_hosts(self, domain: str) -> list[str]:
        domain = domain.lower()
        while True:
            with self._lock:
                cached = self._cache.get(domain)
                if cached is not None:
                    return list(cached)
                running = self._pending.get(domain)
                if running is None:
                    running = self._pending[domain] = threading.Event()
                    break
            running.wait()
        try:
            # Looked up outside the lock so one slow domain does not hold up the others.
            cached = self._lookup(domain)
            with self._lock:
                self._cache[domain] = cached
        finally:
            with self._lock:
                del self._pending[domain]
            running.set()
        return list(cached)

    def _lookup(self, domain: str) -> tuple[str, ...]:
        try:
            answer = self._resolver.resolve(domain, "MX", search=False)
        except dns.exception.DNSException:  # no such domain, no MX, timeout, no server
            return ()
        records = sorted(answer, key=lambda record: record.preference)
        hosts = (record.exchange.to_text().rstrip(".").lower() for record in records)
        return tuple(host for host in hosts if host)  # a null MX (RFC 7505) is "."


class JobMxCache:
    """One MX resolver (and so one answer cache) per job, for a worker process's threads.

    Answers live as long as their job is among the most recently used, so they do not go
    stale across jobs, and memory stays bounded however many jobs a worker sees.
    """

    def __init__(self, factory: Callable[[], MxResolver] = DnsMxResolver,
                 jobs: int = 64) -> None:
        self._factory = factory
        self._jobs = jobs
        self._resolvers: OrderedDict[str, MxResolver] = OrderedDict()
        self._lock = threading.Lock()

    def for_job(self, job_id: str) -> MxResolver:
        with self._lock:
            resolver = self._resolvers.get(job_id)
            if resolver is None:
                resolver = self._resolvers[job_id] = self._factory()
                while len(self._resolvers) > self._jobs:
                    self._resolvers.popitem(last=False)
            else:
                self._resolvers.move_to_end(job_id)
            return resolver


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
