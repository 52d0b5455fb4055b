"""The probe's vocabulary: what to test, and what came back."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol
from urllib.parse import quote

from app.credentials import Secret
from app.probe.policy import HostPolicy

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Encryption(StrEnum):
    SSL = "ssl"            # implicit TLS from the first byte (465, 993)
    STARTTLS = "starttls"  # plaintext greeting, then upgrade (587, 25, 143)
    NONE = "none"          # plaintext throughout; only when the row asked for it
    # Not given, on a port that does not say: the probe tries implicit TLS, then STARTTLS, and
    # reports what worked (ProtocolResult.detected). Never plaintext.
    AUTO = "auto"


class AuthMethod(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a method name, not a password
    OAUTH2 = "oauth2"  # Endpoint.password holds the OAuth2 access token (a Secret)


class ProxyScheme(StrEnum):
    SOCKS5 = "socks5"    # the probe resolves the mail host and sends the proxy its address
    SOCKS5H = "socks5h"  # the proxy resolves the mail host's name
    HTTP = "http"        # HTTP CONNECT to the address the probe resolved


@dataclass(frozen=True)
class ProxyTarget:
    """The proxy a probe connects through (parsed by app.probe.proxy.parse_proxy_url)."""

    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = None
    password: Secret | None = None

    @property
    def display(self) -> str:
        """The URL without its password: safe to show, log and store in the clear."""
        return self._url(None)

    def secret_url(self) -> Secret:
        """The whole URL, password included, for the encrypted credentials."""
        return Secret(self._url(self.password.reveal() if self.password else None))

    def _url(self, password: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username:
            user = quote(self.username, safe="")
            user += f":{quote(password, safe='')}@" if password else "@"
        return f"{self.scheme.value}://{user}{host}:{self.port}"


class MailProtocol(StrEnum):
    SMTP = "smtp"
    IMAP = "imap"


class ErrorCode(StrEnum):
    AUTH_FAILED = "auth_failed"
    APP_PASSWORD_REQUIRED = "app_password_required"  # noqa: S105
    WEB_LOGIN_REQUIRED = "web_login_required"
    BASIC_AUTH_DISABLED = "basic_auth_disabled"
    OAUTH_TOKEN_INVALID = "oauth_token_invalid"  # noqa: S105 - a code, not a token
    AUTH_MECHANISM_UNSUPPORTED = "auth_mechanism_unsupported"
    ACCOUNT_LOCKED = "account_locked"
    MAILBOX_UNAVAILABLE = "mailbox_unavailable"
    TLS_CERTIFICATE_INVALID = "tls_certificate_invalid"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    STARTTLS_UNSUPPORTED = "starttls_unsupported"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    CONNECTION_CLOSED = "connection_closed"
    DNS_NOT_FOUND = "dns_not_found"
    HOST_BLOCKED = "host_blocked"
    SERVER_THROTTLED = "server_throttled"
    PROTOCOL_ERROR = "protocol_error"
    INTERNAL_ERROR = "internal_error"
    PROXY_FAILED = "proxy_failed"  # the account's proxy refused, failed or was unreachable
    OAUTH_REFRESH_FAILED = "oauth_refresh_failed"


# Verdicts that can change on their own when the same login is tried again later: a busy, slow
# or briefly unreachable server. Every other code needs someone to fix something first, and
# ACCOUNT_LOCKED in particular must not be retried (each attempt extends the lock). The job
# runner's retry logic imports this set; this is the one place it is defined.
TRANSIENT_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.CONNECTION_TIMEOUT,
        ErrorCode.CONNECTION_CLOSED,
        ErrorCode.SERVER_THROTTLED,
        ErrorCode.DNS_NOT_FOUND,
    }
)

Outcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Endpoint:
    """One protocol's connection settings for one mailbox."""

    host: str
    port: int
    encryption: Encryption
    username: str
    password: Secret
    auth: AuthMethod = AuthMethod.PASSWORD
    proxy: ProxyTarget | None = None  # None: connect directly (or through the default proxy)


@dataclass(frozen=True)
class ProtocolResult:
    outcome: Outcome
    error_code: ErrorCode | None = None
    error: str | None = None  # the server's own words, with secrets removed
    duration_ms: int = 0
    attempts: int = 1
    # The encryption an AUTO endpoint turned out to use (None: given, or not found out).
    detected: Encryption | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @classmethod
    def skipped(cls) -> ProtocolResult:
        return cls(outcome="skipped", attempts=0)


@dataclass(frozen=True)
class AccountProbe:
    smtp: ProtocolResult
    imap: ProtocolResult
    duration_ms: int

    @property
    def verified(self) -> bool:
        """Status 1: every protocol that was tested passed, and at least one was tested."""
        results = [r for r in (self.smtp, self.imap) if r.outcome != "skipped"]
        return bool(results) and all(r.ok for r in results)


@dataclass(frozen=True)
class ProbeSettings:
    timeout_seconds: float = 20.0
    allow_networks: tuple[IPNetwork, ...] = field(default=())
    extra_ca_file: str | None = None
    local_hostname: str = "mailconnect.localdomain"
    # Banned hosts and allowed ports, checked before DNS: the production default unless given.
    host_policy: HostPolicy = field(default_factory=HostPolicy)
    # PROBE_PROXY_URL: the proxy for endpoints that name none of their own.
    default_proxy: ProxyTarget | None = None


class AccountProber(Protocol):
    """Tests one account's SMTP and IMAP logins side by side; never raises."""

    def probe_sync(self, smtp: Endpoint | None, imap: Endpoint | None) -> AccountProbe: ...
