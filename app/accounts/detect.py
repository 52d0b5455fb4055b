"""Recognise a mailbox's provider from its domain's MX records, for rows that name no server
(and the DNS that autodiscovery, app/accounts/autoconfig.py, asks)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import dns.exception
import dns.resolver


class MxResolver(Protocol):
    def mx_hosts(self, domain: str) -> list[str]:
        """The domain's mail exchangers, most preferred first; empty when there are none or the
        lookup failed."""
        ...


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # lower case, without the trailing dot; "" for "." (RFC 2782: not offered)


class SrvResolver(Protocol):
    def srv_records(self, name: str) -> list[SrvRecord]:
        """The name's SRV records, as published; empty when there are none or the lookup
        failed."""
        ...


V = TypeVar("V")


class OnceEach(Generic[V]):
    """Each key's value computed once, by one thread: threads asking for a key that is being
    computed wait for that computation instead of starting their own. Nothing expires."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        while True:
            with self._lock:
                if key in self._values:
                    return self._values[key]
                running = self._pending.get(key)
                if running is None:
                    running = self._pending[key] = threading.Event()
                    break
            running.wait()
        try:
            # Computed outside the lock so one slow key does not hold up the others.
            value = compute()
            with self._lock:
                self._values[key] = value
        finally:
            with self._lock:
                del self._pending[key]
            running.set()
        return value


class DnsMxResolver:
    """Real DNS (MX, and SRV for autodiscovery), with a short time limit.

    Answers, failures included, are cached per name for the resolver's lifetime, so a job
    with thousands of rows on one domain does one lookup, and an unreachable domain costs the
    time limit once, not once per row. Threads asking for a name that is being looked up wait
    for that lookup instead of starting their own. Nothing expires: make one per request or
    job (JobMxCache).
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._answers: OnceEach[tuple] = OnceEach()

    def mx_hosts(self, domain: str) -> list[str]:
        domain = domain.lower()
        return list(self._answers.get(("MX", domain), lambda: self._mx(domain)))

    def srv_records(self, name: str) -> list[SrvRecord]:
        name = name.lower()
        return list(self._answers.get(("SRV", name), lambda: self._srv(name)))

    def _resolve(self, name: str, rdtype: str) -> list:
        try:
            return list(self._resolver.resolve(name, rdtype, search=False))
        except dns.exception.DNSException:  # no such domain, no record, timeout, no server
            return []

    def _mx(self, domain: str) -> tuple[str, ...]:
        records = sorted(self._resolve(domain, "MX"), key=lambda record: record.preference)
        hosts = (record.exchange.to_text().rstrip(".").lower() for record in records)
        return tuple(host for host in hosts if host)  # a null MX (RFC 7505) is "."

    def _srv(self, name: str) -> tuple[SrvRecord, ...]:
        return tuple(SrvRecord(r.priority, r.weight, r.port,
                               r.target.to_text().rstrip(".").lower())
                     for r in self._resolve(name, "SRV"))


class JobMxCache(Generic[V]):
    """One MX resolver (and so one answer cache) per job, for a worker process's threads; or
    one of anything else whose answers should live as long as its job (autodiscovery).

    Answers live as long as their job is among the most recently used, so they do not go
    stale across jobs, and memory stays bounded however many jobs a worker sees.
    """

    def __init__(self, factory: Callable[[], V] = DnsMxResolver,  # type: ignore[assignment]
                 jobs: int = 64) -> None:
        self._factory = factory
        self._jobs = jobs
        self._resolvers: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def for_job(self, job_id: str) -> V:
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
