"""Banned hosts and allowed ports: the policy itself, and the probe refusing before any DNS."""

from __future__ import annotations

import pytest

from app.probe import Encryption, ErrorCode, Prober, ProbeSettings
from app.probe.policy import (
    ALL_PORTS,
    DEFAULT_ALLOWED_PORTS,
    HostPolicy,
    parse_banned_hosts,
    parse_ports,
)
from tests.app.probe.conftest import LOOPBACK_NETS, endpoint
from tests.app.probe.test_network import FakeResolver
from tests.servers.faults import silent_server

BANNED = HostPolicy(banned_hosts=parse_banned_hosts("example.com, .evil.test, 203.0.113.7"))


@pytest.mark.parametrize("host", [
    "example.com", "mail.example.com", "a.b.example.com", "MAIL.Example.COM.", "evil.test",
    "smtp.evil.test", "203.0.113.7",
])
def test_banned_names_cover_the_host_and_its_subdomains(host: str) -> None:
    assert BANNED.banned_entry(host) is not None
    assert host.lower().rstrip(".") in BANNED.host_refusal(host)


@pytest.mark.parametrize("host", [
    "badexample.com", "example.com.au", "example.org", "notevil.test", "203.0.113.70",
    "7.203.0.113.7.nip.io", "113.7",
])
def test_only_whole_labels_match(host: str) -> None:
    assert BANNED.banned_entry(host) is None
    assert BANNED.host_refusal(host) is None


def test_leading_dot_means_the_same_as_the_bare_name() -> None:
    assert parse_banned_hosts(".Example.com., example.com") == ("example.com",)


def test_ip_entries_match_the_address_in_any_spelling() -> None:
    policy = HostPolicy(banned_hosts=parse_banned_hosts("2001:db8::1"))
    assert policy.banned_entry("[2001:DB8:0::1]") == "2001:db8::1"
    assert policy.banned_entry("2001:db8::2") is None


@pytest.mark.parametrize("text", ["*.example.com", "exa mple.com", "a..b", "-bad.com", "x" * 64])
def test_bad_banned_entries_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        parse_banned_hosts(text)


def test_port_ranges_parse_sorted_and_inclusive() -> None:
    ports = parse_ports("993, 25,465 ,587,20000-29999,25")
    assert ports == ((25, 25), (465, 465), (587, 587), (993, 993), (20000, 29999))
    policy = HostPolicy(allowed_ports=ports)
    assert [p for p in (20000, 25000, 29999) if policy.port_allowed(p)] == [20000, 25000, 29999]
    assert [p for p in (19999, 30000, 2525, 143) if policy.port_allowed(p)] == []
    assert policy.port_refusal(8025) == (
        "port 8025 is not allowed (this service connects to 25, 465, 587, 993, 20000-29999)")


@pytest.mark.parametrize("text", ["", " , ", "0", "65536", "smtp", "30-20", "1-2-3", "25;465",
                                  "-5", "1e3"])
def test_bad_port_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ports(text)


def test_default_is_the_mail_ports() -> None:
    policy = HostPolicy()
    assert policy.allowed_ports == DEFAULT_ALLOWED_PORTS
    assert [p for p in (25, 465, 587, 2525, 143, 993) if not policy.port_allowed(p)] == []
    assert [p for p in (1, 22, 80, 110, 443, 995, 6379, 8025) if policy.port_allowed(p)] == []
    assert policy.banned_hosts == ()


def test_probe_refuses_a_banned_host_before_dns_and_without_connecting() -> None:
    resolver = FakeResolver({"mail.evil.test": ["127.0.0.1"]})
    with silent_server() as server:
        for banned, host in (("evil.test", "mail.evil.test"), ("127.0.0.1", "127.0.0.1")):
            settings = ProbeSettings(timeout_seconds=2, allow_networks=LOOPBACK_NETS,
                                     host_policy=HostPolicy((banned,), ALL_PORTS))
            account = Prober(settings, resolver=resolver).probe_sync(
                endpoint(server.port, host=host),
                endpoint(server.port, Encryption.SSL, host=host))
            for result in (account.smtp, account.imap):
                assert result.error_code == ErrorCode.HOST_BLOCKED, result
                assert f"{host} is not allowed" in (result.error or "")
        assert resolver.asked == [] and server.connections == 0

        # The same server and name, not banned: the probe does resolve and connect.
        open_probe = Prober(ProbeSettings(timeout_seconds=1, allow_networks=LOOPBACK_NETS,
                                          host_policy=HostPolicy(allowed_ports=ALL_PORTS)),
                            resolver=resolver)
        result = open_probe.probe_sync(endpoint(server.port, host="mail.evil.test"), None).smtp
        assert result.error_code == ErrorCode.CONNECTION_TIMEOUT, result
        assert resolver.asked == ["mail.evil.test"] and server.connections == 1


def test_probe_refuses_a_port_outside_the_allowed_list_without_connecting() -> None:
    resolver = FakeResolver({"mail.example.net": ["127.0.0.1"]})
    with silent_server() as server:
        settings = ProbeSettings(timeout_seconds=2, allow_networks=LOOPBACK_NETS)
        result = Prober(settings, resolver=resolver).probe_sync(
            endpoint(server.port, host="mail.example.net"), None).smtp
        assert result.error_code == ErrorCode.HOST_BLOCKED, result
        assert f"port {server.port} is not allowed" in (result.error or "")
        assert resolver.asked == [] and server.connections == 0
