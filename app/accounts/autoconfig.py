"""Autodiscovery of a custom domain's mail servers, for rows whose provider MX does not know.

Done by the workers, never in the POST, once per domain and job:
1. SRV records (RFC 6186): `_submissions._tcp` (implicit TLS, RFC 8314) and `_submission._tcp`
   (STARTTLS) for SMTP, `_imaps._tcp` and `_imap._tcp` for IMAP. Lowest priority first, then
   highest weight; on a tie implicit TLS first, as RFC 8314 prefers it. A target of "." says
   the service is not offered.
2. For what SRV did not give, the Mozilla autoconfig file, in Thunderbird's order: https at
   `autoconfig.<domain>`, https at `<domain>/.well-known/`, then the same two over http. Each
   fetch goes through the outbound network policy (app/outbound.py), all of them within one
   3 s limit, 128 KiB at most, redirects followed only through the same policy checks and
   never from https down to http, and the XML is parsed by defusedxml with DTDs refused.

Never plaintext: a server offered only without TLS is not used (credentials are sent
unencrypted only when a row asked for `none`). Candidates the operator's host policy refuses
(banned host, port not allowed) are skipped.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException

from app.accounts.detect import DnsMxResolver, OnceEach, SrvRecord, SrvResolver
from app.outbound import AddressResolver, OutboundError, http_request, system_addresses
from app.probe.model import Encryption, IPNetwork
from app.probe.policy import HostPolicy, banned_host_entry
from app.probe.prober import build_ssl_context

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)

SRV, AUTOCONFIG = "srv", "autoconfig"
# (service, encryption) per protocol, implicit TLS first.
SRV_SERVICES = {
    "smtp": (("_submissions._tcp", Encryption.SSL), ("_submission._tcp", Encryption.STARTTLS)),
    "imap": (("_imaps._tcp", Encryption.SSL), ("_imap._tcp", Encryption.STARTTLS)),
}
SOCKET_TYPES = {"ssl": Encryption.SSL, "starttls": Encryption.STARTTLS}
# Authentication values that mean a password login (the probe's way in).
PASSWORD_AUTH = frozenset({"password-cleartext", "password-encrypted", "plain", "secure"})
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"
MAX_REDIRECTS = 3
DEFAULT_POLICY = HostPolicy()


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    encryption: Encryption
    source: str  # SRV or AUTOCONFIG
    username: str | None = None  # autoconfig's template, e.g. "%EMAILLOCALPART%"

    def username_for(self, email: str) -> str | None:
        if self.username is None:
            return None
        local, _, domain = email.partition("@")
        return (self.username.replace("%EMAILADDRESS%", email)
                .replace("%EMAILLOCALPART%", local).replace("%EMAILDOMAIN%", domain))


@dataclass(frozen=True)
class Discovered:
    smtp: Server | None = None
    imap: Server | None = None

    def complete(self, settings: dict[str, Any]) -> dict[str, Any] | list[tuple[str, str]]:
        """A deferred row's settings with what discovery found filled in where the row left
        them out, each recorded in `filled` as `field=value (source)`; or the (field,
        message) errors for a protocol the row needs and discovery did not find."""
        completed, filled, errors = dict(settings), list(settings.get("filled", [])), []
        for protocol in ("smtp", "imap"):
            given, server = settings.get(protocol), getattr(self, protocol)
            if given is None:
                continue  # smtpOnly: no IMAP to find
            if server is None:
                if given["host"] is None:
                    errors.append((f"{protocol}Host", "is required (no "
                                   f"{protocol.upper()} server was found by MX records, SRV "
                                   "records or an autoconfig file)"))
                continue
            endpoint = dict(given)
            fills: dict[str, Any] = {}
            if endpoint["host"] is None:
                fills["host"] = server.host
            # Port and encryption go together, as with presets.
            if endpoint["port"] is None and endpoint["encryption"] is None:
                fills |= {"port": server.port, "encryption": server.encryption.value}
            # Only a user name the row left to default (its email) gives way to the file's.
            username = server.username_for(endpoint["email"])
            if username and endpoint["username"] == endpoint["email"] != username:
                fills["username"] = username
            for name, value in fills.items():
                endpoint[name] = value
                field = "UserName" if name == "username" else name.capitalize()
                filled.append(f"{protocol}{field}={value} ({server.source})")
            completed[protocol] = endpoint
        if errors:
            return errors
        completed["filled"] = filled
        return completed


class Discoverer(Protocol):
    def discover(self, email: str) -> Discovered | None:
        """What the email's domain publishes about its servers; None when nothing."""
        ...


def _usable(host: str, port: int, policy: HostPolicy) -> str | None:
    """The host normalised, if it is a host name the policy lets the probe dial on port."""
    try:
        host = banned_host_entry(host)
    except ValueError:
        return None
    if not 1 <= port <= 65535 or policy.refusal(host, port):
        return None
    return host


def srv_servers(domain: str, dns: SrvResolver, policy: HostPolicy = DEFAULT_POLICY
                ) -> dict[str, Server]:
    """Each protocol's best server from the domain's SRV records."""
    found: dict[str, Server] = {}
    for protocol, services in SRV_SERVICES.items():
        candidates: list[tuple[int, int, int, SrvRecord, Encryption]] = []
        for rank, (service, encryption) in enumerate(services):
            # A target of "." (RFC 2782: the service is decidedly not offered) is no server.
            candidates.extend((r.priority, -r.weight, rank, r, encryption)
                              for r in dns.srv_records(f"{service}.{domain}") if r.target)
        for *_, record, encryption in sorted(candidates, key=lambda c: c[:3]):
            host = _usable(record.target, record.port, policy)
            if host is not None:
                found[protocol] = Server(host, record.port, encryption, SRV)
                break
    return found


def parse_autoconfig(xml: bytes, domain: str, policy: HostPolicy = DEFAULT_POLICY
                     ) -> dict[str, Server]:
    """Each protocol's first usable server in a Mozilla config-v1.1.xml; ValueError when the
    file is not one, or is hostile (a DTD, entities)."""
    try:
        root = SafeXml.fromstring(xml, forbid_dtd=True)
    except (DefusedXmlException, SafeXml.ParseError) as exc:
        raise ValueError(f"not a safe autoconfig file ({type(exc).__name__})") from None
    provider = root.find("emailProvider")
    if root.tag != "clientConfig" or provider is None:
        raise ValueError("not a clientConfig file")
    found: dict[str, Server] = {}
    for tag, protocol in (("outgoingServer", "smtp"), ("incomingServer", "imap")):
        for element in provider.findall(tag):
            server = _server(element, protocol, domain, policy)
            if server is not None:
                found[protocol] = server
                break
    return found


def _server(element: Element, protocol: str, domain: str, policy: HostPolicy
            ) -> Server | None:
    def text(name: str) -> str:
        return (element.findtext(name) or "").strip()

    if element.get("type") != protocol:
        return None  # pop3, exchange, ...
    encryption = SOCKET_TYPES.get(text("socketType").lower())
    auth = {(a.text or "").strip().lower() for a in element.findall("authentication")}
    if encryption is None or (auth and not auth & PASSWORD_AUTH) or not text("port").isdigit():
        return None  # plaintext only, or no password login (OAuth2 only, none, ...)
    port = int(text("port"))
    host = _usable(text("hostname").replace("%EMAILDOMAIN%", domain), port, policy)
    if host is None:
        return None
    return Server(host, port, encryption, AUTOCONFIG, text("username") or None)


class AutoconfigFetcher:
    """Fetches a domain's autoconfig file under the outbound network policy.

    `http_port` and `https_port` stay 80 and 443 except in tests, whose servers listen on
    free ports; `resolve` likewise stands in for DNS there.
    """

    def __init__(self, allow: Iterable[IPNetwork] = (), timeout: float = 3.0,
                 max_bytes: int = 128 * 1024, context: ssl.SSLContext | None = None,
                 resolve: AddressResolver = system_addresses, http_port: int = 80,
                 https_port: int = 443) -> None:
        self.allow = tuple(allow)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.context = context
        self.resolve = resolve
        self.ports = {"http": http_port, "https": https_port}

    def urls(self, domain: str) -> list[str]:
        """Thunderbird's order: https first, the autoconfig host before the well-known path."""
        return [f"{scheme}://{host}:{self.ports[scheme]}{path}"
                for scheme in ("https", "http")
                for host, path in ((f"autoconfig.{domain}", AUTOCONFIG_PATH),
                                   (domain, WELL_KNOWN_PATH))]

    def fetch(self, domain: str) -> bytes | None:
        """The first autoconfig file found, or None."""
        deadline = time.monotonic() + self.timeout
        for url in self.urls(domain):
            try:
                return self._get(url, deadline)
            except OutboundError as exc:
                log.info("autoconfig for %s: %s", domain, exc)
            if time.monotonic() >= deadline:
                break
        return None

    def _get(self, url: str, deadline: float) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutboundError(f"{url}: timed out")
            # A third of the limit per connection: one unreachable host leaves time for
            # the other URLs.
            answer = http_request("GET", url, timeout=left, allow=self.allow,
                                  max_bytes=self.max_bytes, resolve=self.resolve,
                                  context=self.context, connect_timeout=self.timeout / 3,
                                  headers={"Accept": "application/xml, text/xml",
                                           "User-Agent": "mailconnect-autoconfig"})
            if answer.status in (301, 302, 303, 307, 308) and "location" in answer.headers:
                # Checked like the first URL: resolved once, the policy applied.
                url = self._follow(url, answer.headers["location"])
                continue
            if answer.status != 200:
                raise OutboundError(f"{url}: HTTP {answer.status}")
            return answer.body
        raise OutboundError(f"{url}: more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _follow(url: str, location: str) -> str:
        """Where a redirect leads; never from https down to http, where anyone on the path
        could answer for the domain."""
        following = urljoin(url, location)
        if urlsplit(url).scheme == "https" and urlsplit(following).scheme != "https":
            raise OutboundError(f"{url}: redirect from https to {following} refused",
                                blocked=True)
        return following


class Autodiscovery:
    """SRV, then autoconfig, for one job: each domain asked once however many rows it has."""

    def __init__(self, dns: SrvResolver | None = None, fetcher: AutoconfigFetcher | None = None,
                 policy: HostPolicy = DEFAULT_POLICY) -> None:
        self.dns = dns or DnsMxResolver()
        self.fetcher = fetcher or AutoconfigFetcher()
        self.policy = policy
        self._found: OnceEach[Discovered | None] = OnceEach()

    def discover(self, email: str) -> Discovered | None:
        domain = email.rpartition("@")[2].lower()
        return self._found.get(domain, lambda: self._discover(domain))

    def _discover(self, domain: str) -> Discovered | None:
        found = srv_servers(domain, self.dns, self.policy)
        if len(found) < 2:
            xml = self.fetcher.fetch(domain)
            if xml is not None:
                try:
                    # SRV's answer stands for its protocol; the file fills in the other.
                    found = {**parse_autoconfig(xml, domain, self.policy), **found}
                except ValueError as exc:
                    log.info("autoconfig for %s refused: %s", domain, exc)
        if not found:
            return None
        return replace(Discovered(), **found)


def build_autodiscovery(settings: Settings) -> Autodiscovery:
    """Real DNS and HTTP, under the probes' network and host policies and trusted CAs."""
    return Autodiscovery(fetcher=AutoconfigFetcher(
        allow=settings.allow_networks,
        context=build_ssl_context(settings.probe_extra_ca_file)), policy=settings.host_policy)
