"""The network policy (SSRF guard), unit level and through the Prober, with fake resolvers."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from app.config import load_settings
from app.probe import Encryption, ErrorCode, HostNotFound, Prober, ProbeSettings, SystemResolver
from app.probe.errors import ProbeError
from app.probe.network import (
    CachingResolver,
    blocked_addresses,
    is_allowed,
    resolve_allowed,
)
from app.probe.policy import OPEN_POLICY
from app.services import build_resolver
from tests.app.probe.conftest import LOOPBACK_NETS, endpoint
from tests.servers.faults import silent_server
from tests.servers.smtp import start_smtp_server

ip = ipaddress.ip_address

BLOCKED = [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00::2", "ff02::1", "ff0e::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::1",
    "64:ff9b::a00:1", "fec0::1",
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"]


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise HostNotFound(f"{host}: NXDOMAIN")
        return self.answers[host]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert not is_allowed(ip(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_allowed(ip(address))


def test_allow_list_opens_only_its_networks() -> None:
    assert is_allowed(ip("127.0.0.1"), LOOPBACK_NETS)
    assert is_allowed(ip("::1"), LOOPBACK_NETS)
    assert is_allowed(ip("::ffff:127.0.0.1"), LOOPBACK_NETS)  # the same socket destination
    assert not is_allowed(ip("10.0.0.1"), LOOPBACK_NETS)
    assert not is_allowed(ip("169.254.169.254"), LOOPBACK_NETS)


def test_one_bad_address_blocks_the_host() -> None:
    assert blocked_addresses(["8.8.8.8", "10.0.0.1"]) == ["10.0.0.1"]
    assert blocked_addresses(["not-an-ip"]) == ["not-an-ip"]


def test_public_host_passes_policy_without_connecting() -> None:
    resolver = FakeResolver({"mail.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    addresses = asyncio.run(resolve_allowed("mail.example.com", 587, resolver))
    assert addresses == ["93.184.216.34", "2606:2800:220:1::1"]


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1"])
def test_resolved_private_address_is_host_blocked(address: str) -> None:
    resolver = FakeResolver({"evil.example.com": ["93.184.216.34", address]})
    with pytest.raises(ProbeError) as caught:
        asyncio.run(resolve_allowed("evil.example.com", 587, resolver))
    assert caught.value.code == ErrorCode.HOST_BLOCKED


def test_ip_literal_is_checked_without_resolving() -> None:
    resolver = FakeResolver({})
    for literal in ("127.0.0.1", "[::1]", "169.254.169.254"):
        with pytest.raises(ProbeError):
            asyncio.run(resolve_allowed(literal, 25, resolver))
    assert resolver.asked == []


def test_prober_blocks_localhost_without_allow_list_and_never_connects() -> None:
    prober = Prober(ProbeSettings(timeout_seconds=3, host_policy=OPEN_POLICY))
    with silent_server() as server:
        for host in ("localhost", "127.0.0.1", "::1"):
            for encryption in Encryption:
                result = prober.probe_sync(endpoint(server.port, encryption, host=host), None).smtp
                assert result.error_code == ErrorCode.HOST_BLOCKED, result
                assert result.duration_ms < 1000
    assert server.connections == 0


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1"])
def test_prober_blocks_private_resolution(address: str) -> None:
    resolver = FakeResolver({"mail.evil.test": [address]})
    prober = Prober(ProbeSettings(timeout_seconds=3), resolver=resolver)
    account = prober.probe_sync(
        endpoint(25, host="mail.evil.test"), endpoint(993, Encryption.SSL, host="mail.evil.test")
    )
    for result in (account.smtp, account.imap):
        assert result.error_code == ErrorCode.HOST_BLOCKED
        assert address in (result.error or "")


def test_dns_failure_is_dns_not_found() -> None:
    prober = Prober(ProbeSettings(timeout_seconds=3), resolver=FakeResolver({}))
    result = prober.probe_sync(endpoint(587, host="nxdomain.example.com"), None).smtp
    assert result.error_code == ErrorCode.DNS_NOT_FOUND
    assert "nxdomain.example.com" in (result.error or "")


def test_system_resolver_reads_the_hosts_file_and_rejects_bad_names() -> None:
    resolver = SystemResolver()
    assert "127.0.0.1" in asyncio.run(resolver.resolve("localhost", 25))
    with pytest.raises(HostNotFound):
        asyncio.run(resolver.resolve("bad..name", 25))  # fails in IDNA, before any DNS query


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_caching_resolver_asks_once_per_host_until_its_answer_expires() -> None:
    inner, ticks = FakeResolver({"smtp.gmail.com": ["142.250.1.108"]}), Ticks()
    resolver = CachingResolver(inner, ttl_seconds=60, monotonic=ticks)
    for host in ("smtp.gmail.com", "SMTP.Gmail.com", "smtp.gmail.com"):
        assert asyncio.run(resolver.resolve(host, 587)) == ["142.250.1.108"]
    assert inner.asked == ["smtp.gmail.com"]
    inner.answers["smtp.gmail.com"] = ["142.250.1.109"]
    ticks.now += 59
    assert asyncio.run(resolver.resolve("smtp.gmail.com", 465)) == ["142.250.1.108"]
    ticks.now += 1
    assert asyncio.run(resolver.resolve("smtp.gmail.com", 465)) == ["142.250.1.109"]
    assert len(inner.asked) == 2


def test_caching_resolver_keeps_no_failure_and_a_bounded_number_of_hosts() -> None:
    inner = FakeResolver({"a.test": ["8.8.8.8"], "b.test": ["8.8.4.4"], "c.test": ["1.1.1.1"]})
    resolver = CachingResolver(inner, ttl_seconds=60, max_hosts=2)
    for _ in range(2):
        with pytest.raises(HostNotFound):
            asyncio.run(resolver.resolve("nxdomain.test", 25))
    assert inner.asked == ["nxdomain.test"] * 2, "a failure is asked again"
    for host in ("a.test", "b.test", "c.test", "b.test", "c.test", "a.test"):
        asyncio.run(resolver.resolve(host, 25))
    assert inner.asked[2:] == ["a.test", "b.test", "c.test", "a.test"], "a.test went first"


def test_a_cached_answer_passes_the_network_policy_on_every_use() -> None:
    resolver = CachingResolver(FakeResolver({"mail.evil.test": ["127.0.0.1"]}), ttl_seconds=60)
    for _ in range(2):
        with pytest.raises(ProbeError) as refused:
            asyncio.run(resolve_allowed("mail.evil.test", 25, resolver))
        assert refused.value.code == ErrorCode.HOST_BLOCKED


def test_services_probe_through_the_cache_unless_it_is_turned_off() -> None:
    assert isinstance(build_resolver(load_settings()), CachingResolver)
    assert isinstance(build_resolver(load_settings(PROBE_DNS_CACHE_SECONDS="0")),
                      SystemResolver)


def test_connects_to_the_checked_address_not_the_name(pki) -> None:
    """The probe dials what policy approved, and verifies TLS against the name it was given
    (the server's certificate is for mail.example.com only)."""
    # 127.0.0.2 refuses (nothing listens there), so the second address is tried.
    resolver = FakeResolver({"mail.example.com": ["127.0.0.2", "127.0.0.1"]})
    settings = ProbeSettings(
        timeout_seconds=3, allow_networks=LOOPBACK_NETS, extra_ca_file=str(pki.ca_file),
        host_policy=OPEN_POLICY,
    )
    prober = Prober(settings, resolver=resolver)
    with start_smtp_server(pki, {"user@example.com": "s3cr3t-Pa$$word"}, cert="wrong_host") as s:
        ok = prober.probe_sync(endpoint(s.ssl_port, Encryption.SSL, host="mail.example.com"), None)
        assert ok.smtp.ok, ok.smtp
        # The same server reached as "localhost" fails: its certificate is not for that name.
        bad = prober.probe_sync(endpoint(s.ssl_port, Encryption.SSL, host="127.0.0.1"), None)
        assert bad.smtp.error_code == ErrorCode.TLS_CERTIFICATE_INVALID
    assert resolver.asked == ["mail.example.com"]


def test_refused_port_is_connection_refused(prober) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = prober.probe_sync(endpoint(port, Encryption.SSL), None).smtp
    assert result.error_code == ErrorCode.CONNECTION_REFUSED
    assert result.duration_ms < 1000
