"""Probes through a proxy: real pproxy (SOCKS5 and HTTP CONNECT) in front of the real Dovecot."""

from __future__ import annotations

import base64
from dataclasses import replace
from ipaddress import ip_network

import pytest

from app.credentials import Secret
from app.probe import Encryption, Endpoint, ErrorCode, HostNotFound, Prober, ProbeSettings
from app.probe.model import ProxyScheme
from app.probe.policy import OPEN_POLICY, HostPolicy
from app.probe.proxy import parse_proxy_url
from tests.conftest import USERS
from tests.servers.dovecot import DovecotServer, free_ports
from tests.servers.faults import Peer, serve, silent_server
from tests.servers.pproxy_server import ProxyServer, start_proxy

pytestmark = pytest.mark.integration

USER = "alice@example.test"
PROXY_USER, PROXY_PASSWORD = "proxyuser", "Prx-pa55.w0rd"


@pytest.fixture(scope="module")
def socks(tmp_path_factory) -> ProxyServer:
    with start_proxy(tmp_path_factory.mktemp("socks"), "socks5") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def socks_auth(tmp_path_factory) -> ProxyServer:
    with start_proxy(tmp_path_factory.mktemp("socks_auth"), "socks5", PROXY_USER,
                     PROXY_PASSWORD) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def http_auth(tmp_path_factory) -> ProxyServer:
    with start_proxy(tmp_path_factory.mktemp("http_auth"), "http", PROXY_USER,
                     PROXY_PASSWORD) as proxy:
        yield proxy


class RecordingResolver:
    """Says which names the probe looked up itself; loopback for every name."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host.endswith(".invalid"):
            raise HostNotFound(host)
        return ["127.0.0.1"]


def smtp(server: DovecotServer, proxy: str | None, host: str = "localhost",
         password: str | None = None) -> Endpoint:
    return Endpoint(host, server.submissions_port, Encryption.SSL, USER,
                    Secret(password or USERS[USER]), proxy=proxy and parse_proxy_url(proxy))


def imap(server: DovecotServer, proxy: str | None, host: str = "localhost") -> Endpoint:
    return Endpoint(host, server.imap_port, Encryption.STARTTLS, USER, Secret(USERS[USER]),
                    proxy=proxy and parse_proxy_url(proxy))


def both(prober: Prober, server: DovecotServer, proxy: str | None, **kwargs):
    return prober.probe_sync(smtp(server, proxy, **kwargs), imap(server, proxy, **kwargs))


@pytest.mark.parametrize("proxy_name", ["socks", "socks_auth", "http_auth"])
def test_verifies_through_the_proxy(request, prober: Prober, mail_server: DovecotServer,
                                    proxy_name: str) -> None:
    proxy: ProxyServer = request.getfixturevalue(proxy_name)
    before = len(proxy.tunnels())
    account = both(prober, mail_server, proxy.url())
    assert account.verified, account
    # The mail server's connections came out of the proxy: it opened one tunnel to each port
    # (Dovecot has no other way to have been reached: see the proxy-down test).
    opened = proxy.tunnels()[before:]
    assert sorted(opened) == sorted([f"127.0.0.1:{mail_server.submissions_port}",
                                     f"127.0.0.1:{mail_server.imap_port}"])


def test_a_wrong_mail_password_is_still_the_servers_verdict(prober, mail_server, socks) -> None:
    result = prober.probe_sync(smtp(mail_server, socks.url(), password="wrong"), None).smtp
    assert result.error_code == ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("proxy_name", ["socks_auth", "http_auth"])
def test_wrong_proxy_password_is_proxy_failed(request, prober, mail_server,
                                              proxy_name: str) -> None:
    proxy: ProxyServer = request.getfixturevalue(proxy_name)
    before = len(proxy.tunnels())
    account = both(prober, mail_server, proxy.url(password="Wrong-proxy-pw"))
    for result in (account.smtp, account.imap):
        assert result.error_code == ErrorCode.PROXY_FAILED
        assert f"{proxy.scheme}://{PROXY_USER}@127.0.0.1:{proxy.port}" in result.error
        assert "Wrong-proxy-pw" not in result.error
    assert "Unauthorized" in proxy.log()
    assert proxy.tunnels()[before:] == []


def test_missing_proxy_credentials_are_proxy_failed(prober, mail_server, http_auth) -> None:
    result = prober.probe_sync(smtp(mail_server, f"http://127.0.0.1:{http_auth.port}"), None).smtp
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert "407" in result.error


def test_proxy_down_is_proxy_failed(prober, mail_server) -> None:
    port = free_ports(1)[0]  # nothing listens there
    account = both(prober, mail_server, f"socks5://u:pw-123456@127.0.0.1:{port}")
    for result in (account.smtp, account.imap):
        assert result.error_code == ErrorCode.PROXY_FAILED
        assert f"cannot connect to the proxy socks5://u@127.0.0.1:{port}" in result.error
        assert "pw-123456" not in result.error


def test_proxy_that_cannot_reach_the_server_is_proxy_failed(prober, http_auth) -> None:
    # (pproxy's SOCKS5 side answers "granted" before it dials, so only its HTTP side can say.)
    port = free_ports(1)[0]
    result = prober.probe_sync(Endpoint("127.0.0.1", port, Encryption.SSL, USER,
                                        Secret("x"), proxy=parse_proxy_url(http_auth.url())),
                               None).smtp
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert f"refused a tunnel to 127.0.0.1:{port}" in result.error


def test_a_silent_proxy_is_proxy_failed_at_the_deadline(prober, mail_server) -> None:
    with silent_server() as proxy:
        result = prober.probe_sync(smtp(mail_server, f"socks5://127.0.0.1:{proxy.port}"),
                                   None).smtp
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert "proxy" in result.error


def test_socks5h_sends_the_name_and_socks5_the_checked_address(probe_settings, mail_server,
                                                              socks) -> None:
    resolver = RecordingResolver()
    prober = Prober(probe_settings, resolver=resolver)
    before = len(socks.tunnels())
    assert prober.probe_sync(smtp(mail_server, socks.url("socks5h")), None).verified
    assert resolver.asked == []  # the proxy resolved it
    assert socks.tunnels()[before:] == [f"localhost:{mail_server.submissions_port}"]
    assert prober.probe_sync(smtp(mail_server, socks.url("socks5")), None).verified
    assert resolver.asked == ["localhost"]
    assert socks.tunnels()[before + 1:] == [f"127.0.0.1:{mail_server.submissions_port}"]


def test_the_proxy_address_passes_the_network_policy(pki, mail_server, socks) -> None:
    # Only Dovecot's address is allowed, not the proxy's (127.0.0.2 is loopback too).
    settings = ProbeSettings(timeout_seconds=3, allow_networks=(ip_network("127.0.0.1/32"),),
                             extra_ca_file=str(pki.ca_file), host_policy=OPEN_POLICY)
    before = len(socks.tunnels())
    result = Prober(settings).probe_sync(
        smtp(mail_server, f"socks5://127.0.0.2:{socks.port}"), None).smtp
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert "refused by the network policy" in result.error
    assert socks.tunnels()[before:] == []


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "http"])
def test_the_mail_host_passes_the_network_policy(pki, mail_server, socks, scheme) -> None:
    # The proxy is allowed; the mail host's private address is not, even when socks5h would
    # let the proxy resolve a name (an address literal is not a name).
    settings = ProbeSettings(timeout_seconds=3, allow_networks=(ip_network("127.0.0.1/32"),),
                             extra_ca_file=str(pki.ca_file), host_policy=OPEN_POLICY)
    before = len(socks.tunnels())
    result = Prober(settings).probe_sync(
        smtp(mail_server, socks.url(scheme), host="127.0.0.5"), None).smtp
    assert result.error_code == ErrorCode.HOST_BLOCKED
    assert socks.tunnels()[before:] == []


def test_socks5h_still_applies_banned_hosts_and_ports(pki, mail_server, socks) -> None:
    policy = HostPolicy(banned_hosts=("internal.test",))
    settings = ProbeSettings(timeout_seconds=3, allow_networks=(ip_network("127.0.0.0/8"),),
                             extra_ca_file=str(pki.ca_file), host_policy=policy)
    before = len(socks.tunnels())
    prober = Prober(settings)
    banned = prober.probe_sync(smtp(mail_server, socks.url("socks5h"),
                                    host="mail.internal.test"), None).smtp
    assert banned.error_code == ErrorCode.HOST_BLOCKED
    port = prober.probe_sync(smtp(mail_server, socks.url("socks5h")), None).smtp
    assert port.error_code == ErrorCode.HOST_BLOCKED  # Dovecot's test port is not allowed
    assert socks.tunnels()[before:] == []


def test_an_unknown_proxy_host_is_proxy_failed_not_dns_not_found(probe_settings,
                                                                  mail_server) -> None:
    prober = Prober(probe_settings, resolver=RecordingResolver())
    result = prober.probe_sync(smtp(mail_server, "socks5://proxy.invalid:1080"), None).smtp
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert "host not found" in result.error


def test_the_default_proxy_applies_unless_the_endpoint_has_its_own(probe_settings, mail_server,
                                                                   socks, socks_auth) -> None:
    prober = Prober(replace(probe_settings, default_proxy=parse_proxy_url(socks.url())))
    before, before_auth = len(socks.tunnels()), len(socks_auth.tunnels())
    assert prober.probe_sync(smtp(mail_server, None), None).verified
    assert prober.probe_sync(smtp(mail_server, socks_auth.url()), None).verified
    assert len(socks.tunnels()) == before + 1
    assert len(socks_auth.tunnels()) == before_auth + 1


def test_a_proxy_echoing_the_credentials_has_them_scrubbed(prober, mail_server) -> None:
    """An HTTP proxy that quotes our Proxy-Authorization header back in its refusal."""
    async def echo(peer: Peer) -> None:
        lines = []
        while (line := await peer.readline()) not in (b"\r\n", b"\n", b""):
            lines.append(line.decode().strip())
        await peer.send(f"HTTP/1.1 403 Forbidden {' | '.join(lines)}", "", "")

    with serve(echo) as proxy:
        result = prober.probe_sync(
            smtp(mail_server, f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"),
            None).smtp
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert basic in proxy.received_text()  # the proxy was sent the credentials...
    assert result.error_code == ErrorCode.PROXY_FAILED
    assert "403" in result.error and "********" in result.error
    assert basic not in result.error and PROXY_PASSWORD not in result.error  # ...and we hid them


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "scheme", "host", "port", "user", "password"), [
    ("socks5://1.2.3.4:1080", ProxyScheme.SOCKS5, "1.2.3.4", 1080, None, None),
    ("SOCKS5H://Proxy.Example.com:1080/", ProxyScheme.SOCKS5H, "proxy.example.com", 1080, None,
     None),
    ("http://u%40x:p%3Aw@[::1]:3128", ProxyScheme.HTTP, "::1", 3128, "u@x", "p:w"),
    ("http://user:p@ss@proxy.example.com:8080", ProxyScheme.HTTP, "proxy.example.com", 8080,
     "user", "p@ss"),
])
def test_parses(url, scheme, host, port, user, password) -> None:
    proxy = parse_proxy_url(url)
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username) == (scheme, host, port, user)
    assert (proxy.password.reveal() if proxy.password else None) == password
    # The stored form comes back as the same proxy; the display form has no password.
    assert parse_proxy_url(proxy.secret_url().reveal()) == proxy
    assert password is None or password not in proxy.display


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://secretpw@h:1", "must start with socks5://"),
    ("socks4://h:1", "must start with socks5://"),
    ("proxy.example.com:1080", "must start with socks5://"),
    ("socks5://u:secretpw@h", "port"),
    ("socks5://u:secretpw@h:0", "port"),
    ("socks5://u:secretpw@h:70000", "ports are 1 to 65535"),
    ("socks5://u:secretpw@:1080", "host"),
    ("socks5://u:secretpw@bad_host!:1080", "host"),
    ("socks5://:secretpw@h:1080", "without a user name"),
    ("http://u:secretpw@h:1080/path", "nothing after the port"),
    ("http://u:secretpw@h:1080?x=1", "nothing after the port"),
    ("socks5://u:secretpw\n@h:1080", "control characters"),
    ("socks5://u:" + "p" * 256 + "@h:1080", "longer than 255 bytes"),
])
def test_refuses_without_repeating_the_url(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_proxy_url(url)
    assert "secretpw" not in str(caught.value) and "ppppp" not in str(caught.value)
