"""The verdict matrix: every situation the probe must name, as data, in one place.

Each `Row` is one line of the README's "Verdicts: scenario matrix" table and, for each protocol
it covers, one test in test_scenarios.py: the server to set up (Dovecot or aiosmtpd where real
behaviour matters, a fault-injection server for faults), the encryption the mailbox row asks
for, the exact ErrorCode expected (None: the login succeeds) and how soon the verdict must come.
tests/bench/verdicts.py runs the timing-sensitive rows with the production timeout.

    python -m tests.app.probe.scenarios                  # print the README table
    python -m tests.app.probe.scenarios --write-readme   # rewrite it in README.md
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

from app.credentials import Secret
from app.probe import (
    AuthMethod,
    Encryption,
    Endpoint,
    ErrorCode,
    HostNotFound,
    MailProtocol,
    Prober,
    ProbeSettings,
    ProtocolResult,
)
from app.probe.policy import OPEN_POLICY
from app.probe.sasl import OAuthMechanism, oauth_response, plain_response
from tests.app.probe.conftest import LOOPBACK_NETS, PASSWORD, USER
from tests.servers.dovecot import DovecotServer, start_mail_server
from tests.servers.faults import (
    LOOPBACK,
    FaultServer,
    drip_server,
    garbage_server,
    scripted_imap,
    scripted_smtp,
    server_tls_context,
    silent_server,
)
from tests.servers.smtp import CertName, SmtpServer, start_smtp_server
from tests.servers.tls import TestPKI

E = ErrorCode
SMTP, IMAP = MailProtocol.SMTP, MailProtocol.IMAP
SSL, STARTTLS, NONE, AUTO = Encryption.SSL, Encryption.STARTTLS, Encryption.NONE, Encryption.AUTO
USERS = {USER: PASSWORD}
UNKNOWN_HOST = "mail.no-such-host.invalid"
README = Path(__file__).resolve().parents[3] / "README.md"
START_MARKER, END_MARKER = "<!-- scenarios:start -->", "<!-- scenarios:end -->"

PROMPT_SECONDS = 1.0  # a verdict that needs no waiting: loopback round trips only
MISMATCH_SECONDS = 5.0  # the bound for an encryption/port mix-up
DEADLINE_MARGIN = 0.5  # how far past the deadline a timeout verdict may land


class Timing(Enum):
    """How soon a verdict must come; the value is the README's wording."""

    PROMPT = "< 1 s"
    BEFORE_DEADLINE = "< 5 s, before the deadline"
    AT_DEADLINE = "at the deadline"

    def window(self, timeout: float) -> tuple[float, float]:
        """(earliest, latest) seconds from the call to the verdict, for this probe timeout."""
        if self is Timing.PROMPT:
            return 0.0, PROMPT_SECONDS
        if self is Timing.BEFORE_DEADLINE:
            # Decided by the greeting wait: within 5 s, and with a short timeout clearly before
            # the deadline would have fired (so never a connection_timeout in disguise).
            return 0.0, min(MISMATCH_SECONDS, timeout - DEADLINE_MARGIN)
        return timeout - 0.1, timeout + DEADLINE_MARGIN


# --- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a scenario's probe connects, and how to tell whether the password reached it."""

    port: int
    host: str = "localhost"
    # password -> did the server receive it? None where the server cannot tell (Dovecot).
    password_seen: Callable[[str], bool] | None = None
    token: str | None = None  # an OAuth2 row's access token, minted by the server's setup


class Servers:
    """The servers rows share (Dovecot, aiosmtpd with a good certificate), each started on
    first use and stopped on exit; rows that need a server of their own start it themselves."""

    def __init__(self, workdir: Path, pki: TestPKI) -> None:
        self.workdir = workdir
        self.pki = pki
        self._stack = contextlib.ExitStack()
        self._dovecot: DovecotServer | None = None
        self._smtpd: SmtpServer | None = None

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def dovecot(self) -> DovecotServer:
        if self._dovecot is None:
            server = self._stack.enter_context(
                start_mail_server(self.workdir / "dovecot", self.pki, USERS)
            )
            if server.submission_port is None:
                raise RuntimeError("the scenarios need Dovecot's submission service, not pymap")
            self._dovecot = server
        return self._dovecot

    @property
    def smtpd(self) -> SmtpServer:
        if self._smtpd is None:
            self._smtpd = self._stack.enter_context(start_smtp_server(self.pki, USERS))
        return self._smtpd


Setup = Callable[[Servers], AbstractContextManager[Target]]
DovecotPort = Literal["imap_port", "imaps_port", "submission_port", "submissions_port"]
SmtpdPort = Literal["starttls_port", "ssl_port", "plain_port"]


def password_forms(username: str, password: str) -> list[str]:
    """How a password (or token) can travel: as is (IMAP LOGIN), base64 alone (AUTH LOGIN),
    or inside a base64 PLAIN, XOAUTH2 or OAUTHBEARER blob."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        plain_response(username, Secret(password)).decode(),
        *(oauth_response(m, username, Secret(password)).decode() for m in OAuthMechanism),
    ]


def dovecot(port: DovecotPort) -> Setup:
    def setup(servers: Servers) -> AbstractContextManager[Target]:
        port_number = getattr(servers.dovecot, port)
        return contextlib.nullcontext(Target(port_number))

    return setup


def dovecot_oauth(port: DovecotPort, *, revoked: bool = False) -> Setup:
    """Dovecot with a token minted for USER at its introspection server (revoked at once when
    `revoked`); the probe logs in with it over XOAUTH2."""

    @contextlib.contextmanager
    def setup(servers: Servers) -> Iterator[Target]:
        tokens = servers.dovecot.tokens
        if tokens is None:
            raise RuntimeError("the OAuth2 scenarios need Dovecot's oauth2 passdb, not pymap")
        token = tokens.mint(USER)
        if revoked:
            tokens.revoke(token)
        try:
            yield Target(getattr(servers.dovecot, port), token=token)
        finally:
            tokens.revoke(token)

    return setup


def smtpd(port: SmtpdPort, cert: CertName = "good") -> Setup:
    """aiosmtpd: the shared server, or a fresh one presenting a bad certificate."""

    @contextlib.contextmanager
    def setup(servers: Servers) -> Iterator[Target]:
        with contextlib.ExitStack() as stack:
            server = (
                servers.smtpd
                if cert == "good"
                else stack.enter_context(start_smtp_server(servers.pki, USERS, cert=cert))
            )
            before = len(server.auth_attempts)  # the shared server keeps earlier rows' attempts
            # Every AUTH aiosmtpd sees carries the password, so any new attempt means "sent".
            yield Target(getattr(server, port), password_seen=lambda _: (
                len(server.auth_attempts) > before
            ))

    return setup


def fault(make: Callable[[TestPKI], AbstractContextManager[FaultServer]]) -> Setup:
    """A fault-injection or scripted server from tests/servers/faults.py, made per scenario."""

    @contextlib.contextmanager
    def setup(servers: Servers) -> Iterator[Target]:
        with make(servers.pki) as server:
            yield Target(server.port, password_seen=lambda password: any(
                form in server.received_text() for form in password_forms(USER, password)
            ))

    return setup


def imap_with_cert(cert: CertName, encryption: Encryption) -> Setup:
    def make(pki: TestPKI) -> AbstractContextManager[FaultServer]:
        context = server_tls_context(getattr(pki, cert))
        if encryption == SSL:
            return scripted_imap(USERS, implicit_tls=context)
        return scripted_imap(USERS, starttls=context)

    return fault(make)


def imap_replying(command: str, reply: str | None) -> Setup:
    """Scripted IMAP answering `command` with `reply` (None: hang up instead)."""
    return fault(lambda _: scripted_imap(USERS, replies={command: reply}))


def smtp_replying(verb: str, reply: str | None) -> Setup:
    """Scripted SMTP answering `verb` with `reply` (None: hang up instead)."""
    return fault(lambda _: scripted_smtp({verb: reply}))


@contextlib.contextmanager
def nothing_listening(_: Servers) -> Iterator[Target]:
    # Bound but not listening: the kernel answers a SYN with a reset, and holding the socket
    # keeps the port from being handed to anyone else meanwhile.
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield Target(sock.getsockname()[1])


def unknown_host(_: Servers) -> AbstractContextManager[Target]:
    return contextlib.nullcontext(Target(465, host=UNKNOWN_HOST))


class StaticResolver:
    """The scenarios' resolver: localhost only, so no row can depend on real DNS."""

    def __init__(self, names: Mapping[str, Sequence[str]] | None = None) -> None:
        self._names = {k: list(v) for k, v in (names or {"localhost": [LOOPBACK]}).items()}

    async def resolve(self, host: str, port: int) -> list[str]:
        if host not in self._names:
            raise HostNotFound(f"{host}: no such host")
        return list(self._names[host])


# --- the matrix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One protocol's half of a row."""

    setup: Setup
    encryption: Encryption
    expected: ErrorCode | None  # None: the login succeeds
    message_contains: str | None = None  # the stored message must say this (a mix-up, a stage)


@dataclass(frozen=True)
class Row:
    key: str  # test id and benchmark label
    name: str  # the README's words
    smtp: Side | None = None
    imap: Side | None = None
    timing: Timing = Timing.PROMPT
    password: str = PASSWORD  # an OAuth2 row's token where its server does not mint one
    auth: AuthMethod = AuthMethod.PASSWORD
    password_never_sent: bool = False
    hint_contains: str | None = None  # hint_for(code, provider=None, message) must say this
    bench: bool = False  # timing-sensitive: tests/bench/verdicts.py runs it


GMAIL_APP_PASSWORD = (
    "534-5.7.9 Application-specific password required. Learn more at\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor"
)
GMAIL_WEB_LOGIN = (
    "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1> Please log in via\n"
    "534-5.7.14 your web browser and then try again.\n"
    "534 5.7.14  Learn more at https://support.google.com/mail/answer/78754"
)
MS_BASIC_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
)
MS_TENANT_SMTP_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
)
EXO_BASIC_AUTH_RETIRED = "550 5.7.30 Basic authentication is not supported for Client Submission"
YAHOO_LOCKED = "535 5.7.0 (#AUTH005) Too many bad auth attempts."
GMAIL_IMAP_APP_PASSWORD = (
    "NO [ALERT] Application-specific password required: "
    "https://support.google.com/accounts/answer/185833 (Failure)"
)
GMAIL_IMAP_WEB_LOGIN = (
    "NO [ALERT] Please log in via your web browser: "
    "https://support.google.com/mail/accounts/answer/78754 (Failure)"
)


def _bad_certificate_rows() -> list[Row]:
    rows = []
    for cert, words in (
        ("self_signed", "self-signed"), ("expired", "expired"), ("wrong_host", "wrong-hostname")
    ):
        for encryption, port, how in ((SSL, "ssl_port", "implicit TLS"),
                                      (STARTTLS, "starttls_port", "STARTTLS")):
            rows.append(Row(
                f"cert-{cert.replace('_', '-')}-{encryption}",
                f"{words} certificate, {how} (aiosmtpd / scripted IMAP)",
                smtp=Side(smtpd(port, cert), encryption, E.TLS_CERTIFICATE_INVALID),
                imap=Side(imap_with_cert(cert, encryption), encryption, E.TLS_CERTIFICATE_INVALID),
                password_never_sent=True,
            ))
    return rows


ROWS: tuple[Row, ...] = (
    # --- good credentials ---
    Row("good-ssl-dovecot", "good credentials, implicit TLS (Dovecot)",
        smtp=Side(dovecot("submissions_port"), SSL, None),
        imap=Side(dovecot("imaps_port"), SSL, None)),
    Row("good-starttls-dovecot", "good credentials, STARTTLS (Dovecot)",
        smtp=Side(dovecot("submission_port"), STARTTLS, None),
        imap=Side(dovecot("imap_port"), STARTTLS, None)),
    Row("good-none-dovecot", "good credentials, plaintext when `none` was asked (Dovecot)",
        smtp=Side(dovecot("submission_port"), NONE, None),
        imap=Side(dovecot("imap_port"), NONE, None)),
    Row("good-ssl-aiosmtpd", "good credentials, implicit TLS (aiosmtpd)",
        smtp=Side(smtpd("ssl_port"), SSL, None)),
    Row("good-starttls-aiosmtpd", "good credentials, STARTTLS (aiosmtpd)",
        smtp=Side(smtpd("starttls_port"), STARTTLS, None)),
    Row("good-none-aiosmtpd", "good credentials, plaintext when `none` was asked (aiosmtpd)",
        smtp=Side(smtpd("plain_port"), NONE, None)),
    Row("good-auto-ssl-dovecot",
        "good credentials, encryption not given, implicit TLS detected (Dovecot)",
        smtp=Side(dovecot("submissions_port"), AUTO, None),
        imap=Side(dovecot("imaps_port"), AUTO, None)),
    Row("good-auto-starttls-dovecot",
        "good credentials, encryption not given, STARTTLS detected (Dovecot)",
        smtp=Side(dovecot("submission_port"), AUTO, None),
        imap=Side(dovecot("imap_port"), AUTO, None)),
    # --- the provider said no ---
    Row("wrong-password", "wrong password (Dovecot)",
        smtp=Side(dovecot("submission_port"), STARTTLS, E.AUTH_FAILED, "535 5.7.8"),
        imap=Side(dovecot("imap_port"), STARTTLS, E.AUTH_FAILED, "[AUTHENTICATIONFAILED]"),
        password="wrong-password"),
    Row("app-password",
        "Gmail-style `534 5.7.9 Application-specific password required`, "
        "IMAP `NO [ALERT] Application-specific password required`",
        smtp=Side(smtp_replying("AUTH", GMAIL_APP_PASSWORD), NONE, E.APP_PASSWORD_REQUIRED),
        imap=Side(imap_replying("LOGIN", GMAIL_IMAP_APP_PASSWORD), NONE,
                  E.APP_PASSWORD_REQUIRED)),
    Row("web-login", "`534 5.7.14`, IMAP `NO [ALERT] Please log in via your web browser`",
        smtp=Side(smtp_replying("AUTH", GMAIL_WEB_LOGIN), NONE, E.WEB_LOGIN_REQUIRED),
        imap=Side(imap_replying("LOGIN", GMAIL_IMAP_WEB_LOGIN), NONE, E.WEB_LOGIN_REQUIRED)),
    Row("basic-auth-disabled",
        "Microsoft-style `535 5.7.139 ... basic authentication is disabled.`, with the "
        "OAuth-only hint",
        smtp=Side(smtp_replying("AUTH", MS_BASIC_AUTH_DISABLED), NONE, E.BASIC_AUTH_DISABLED),
        hint_contains="only OAuth"),
    Row("tenant-smtp-auth-disabled",
        "`535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant`, with a hint "
        "for the tenant's admin",
        smtp=Side(smtp_replying("AUTH", MS_TENANT_SMTP_AUTH_DISABLED), NONE,
                  E.BASIC_AUTH_DISABLED),
        hint_contains="tenant's admin"),
    Row("basic-auth-not-supported",
        "Exchange Online `550 5.7.30 Basic authentication is not supported for Client "
        "Submission`, with a hint to switch the row to OAuth2",
        smtp=Side(smtp_replying("AUTH", EXO_BASIC_AUTH_RETIRED), NONE, E.BASIC_AUTH_DISABLED),
        hint_contains="authType oauth2"),
    Row("account-locked", "Yahoo-style `535 5.7.0 (#AUTH005) Too many bad auth attempts.`",
        smtp=Side(smtp_replying("AUTH", YAHOO_LOCKED), NONE, E.ACCOUNT_LOCKED)),
    Row("no-usable-mechanism",
        "no AUTH mechanism the probe speaks (SMTP `AUTH CRAM-MD5 XOAUTH2`; IMAP "
        "`LOGINDISABLED`, `AUTH=GSSAPI`), password never sent",
        smtp=Side(fault(lambda pki: scripted_smtp(
            auth_mechanisms="CRAM-MD5 XOAUTH2", implicit_tls=server_tls_context(pki.good)
        )), SSL, E.AUTH_MECHANISM_UNSUPPORTED, "CRAM-MD5"),
        imap=Side(fault(lambda pki: scripted_imap(
            USERS, capabilities=("IMAP4rev1", "AUTH=GSSAPI"), login_disabled=True,
            implicit_tls=server_tls_context(pki.good),
        )), SSL, E.AUTH_MECHANISM_UNSUPPORTED),
        password_never_sent=True),
    Row("not-connected",
        "Office 365-style IMAP `BAD User is authenticated but not connected.` after LOGIN, "
        "message says the login was not usable",
        imap=Side(imap_replying("EXAMINE", "BAD User is authenticated but not connected."),
                  NONE, E.AUTH_FAILED, "not usable")),
    Row("examine-fails", "IMAP login ok but `EXAMINE INBOX` fails",
        imap=Side(imap_replying("EXAMINE", "NO Mailbox doesn't exist: INBOX"), NONE,
                  E.MAILBOX_UNAVAILABLE)),
    # --- OAuth2 rows: XOAUTH2 against Dovecot's oauth2 passdb and its introspection server ---
    Row("oauth-good-ssl", "OAuth2 token accepted over XOAUTH2, implicit TLS (Dovecot)",
        smtp=Side(dovecot_oauth("submissions_port"), SSL, None),
        imap=Side(dovecot_oauth("imaps_port"), SSL, None), auth=AuthMethod.OAUTH2),
    Row("oauth-good-starttls", "OAuth2 token accepted over XOAUTH2, STARTTLS (Dovecot)",
        smtp=Side(dovecot_oauth("submission_port"), STARTTLS, None),
        imap=Side(dovecot_oauth("imap_port"), STARTTLS, None), auth=AuthMethod.OAUTH2),
    Row("oauth-revoked",
        "revoked OAuth2 token: the JSON error challenge is answered, then the refusal (Dovecot)",
        smtp=Side(dovecot_oauth("submission_port", revoked=True), STARTTLS,
                  E.OAUTH_TOKEN_INVALID, "token refused: status 401"),
        imap=Side(dovecot_oauth("imaps_port", revoked=True), SSL, E.OAUTH_TOKEN_INVALID,
                  "token refused: status 401"),
        auth=AuthMethod.OAUTH2),
    Row("oauth-not-offered",
        "OAuth2 row, server offers neither XOAUTH2 nor OAUTHBEARER, token never sent",
        smtp=Side(fault(lambda _: scripted_smtp()), NONE, E.AUTH_MECHANISM_UNSUPPORTED,
                  "server offers: PLAIN LOGIN"),
        imap=Side(fault(lambda _: scripted_imap(USERS)), NONE, E.AUTH_MECHANISM_UNSUPPORTED,
                  "server offers: PLAIN"),
        auth=AuthMethod.OAUTH2, password_never_sent=True),
    # --- certificates ---
    *_bad_certificate_rows(),
    # --- encryption and port mix-ups ---
    Row("ssl-on-starttls-port", "implicit TLS asked on a STARTTLS port (Dovecot)",
        smtp=Side(dovecot("submission_port"), SSL, E.TLS_HANDSHAKE_FAILED,
                  "wrong version number"),
        imap=Side(dovecot("imap_port"), SSL, E.TLS_HANDSHAKE_FAILED, "wrong version number"),
        bench=True),
    Row("ssl-on-plain-port",
        "implicit TLS asked on a plaintext-only port (aiosmtpd / scripted IMAP)",
        smtp=Side(smtpd("plain_port"), SSL, E.TLS_HANDSHAKE_FAILED, "wrong version number"),
        imap=Side(fault(lambda _: scripted_imap(USERS)), SSL, E.TLS_HANDSHAKE_FAILED,
                  "wrong version number"),
        password_never_sent=True, bench=True),
    Row("starttls-on-ssl-port", "STARTTLS asked on an implicit-TLS port (Dovecot)",
        smtp=Side(dovecot("submissions_port"), STARTTLS, E.TLS_HANDSHAKE_FAILED,
                  "implicit TLS (ssl)"),
        imap=Side(dovecot("imaps_port"), STARTTLS, E.TLS_HANDSHAKE_FAILED, "implicit TLS (ssl)"),
        timing=Timing.BEFORE_DEADLINE, bench=True),
    Row("none-on-ssl-port", "plaintext (`none`) asked on an implicit-TLS port (Dovecot)",
        smtp=Side(dovecot("submissions_port"), NONE, E.TLS_HANDSHAKE_FAILED, "implicit TLS (ssl)"),
        imap=Side(dovecot("imaps_port"), NONE, E.TLS_HANDSHAKE_FAILED, "implicit TLS (ssl)"),
        timing=Timing.BEFORE_DEADLINE, bench=True),
    Row("starttls-not-offered", "STARTTLS asked but not offered, password never sent",
        smtp=Side(fault(lambda _: scripted_smtp()), STARTTLS, E.STARTTLS_UNSUPPORTED),
        imap=Side(fault(lambda _: scripted_imap(USERS)), STARTTLS, E.STARTTLS_UNSUPPORTED),
        password_never_sent=True),
    Row("auto-plaintext-only",
        "encryption not given, plaintext server without STARTTLS (aiosmtpd / scripted IMAP), "
        "password never sent",
        smtp=Side(smtpd("plain_port"), AUTO, E.STARTTLS_UNSUPPORTED, "encryption none"),
        imap=Side(fault(lambda _: scripted_imap(USERS)), AUTO, E.STARTTLS_UNSUPPORTED,
                  "encryption none"),
        password_never_sent=True),
    Row("imap-smtp-mixup",
        "IMAP row pointed at an SMTP port, and the reverse (Dovecot), message naming the mix-up",
        smtp=Side(dovecot("imap_port"), STARTTLS, E.PROTOCOL_ERROR, "may point at IMAP"),
        imap=Side(dovecot("submission_port"), STARTTLS, E.PROTOCOL_ERROR, "may point at SMTP")),
    Row("imap-smtp-mixup-ssl",
        "the same mix-up over implicit TLS (Dovecot)",
        smtp=Side(dovecot("imaps_port"), SSL, E.PROTOCOL_ERROR, "may point at IMAP"),
        imap=Side(dovecot("submissions_port"), SSL, E.PROTOCOL_ERROR, "may point at SMTP")),
    # --- the network and the transport ---
    Row("nothing-listening", "nothing listening",
        smtp=Side(nothing_listening, STARTTLS, E.CONNECTION_REFUSED),
        imap=Side(nothing_listening, SSL, E.CONNECTION_REFUSED),
        bench=True),
    Row("unknown-host", "unknown host",
        smtp=Side(unknown_host, SSL, E.DNS_NOT_FOUND),
        imap=Side(unknown_host, SSL, E.DNS_NOT_FOUND),
        bench=True),
    Row("silent-ssl", "listener that never greets, implicit TLS asked",
        smtp=Side(fault(lambda _: silent_server()), SSL, E.CONNECTION_TIMEOUT),
        imap=Side(fault(lambda _: silent_server()), SSL, E.CONNECTION_TIMEOUT),
        timing=Timing.AT_DEADLINE, bench=True),
    Row("silent-starttls", "listener that never greets, STARTTLS asked",
        smtp=Side(fault(lambda _: silent_server()), STARTTLS, E.CONNECTION_TIMEOUT),
        imap=Side(fault(lambda _: silent_server()), STARTTLS, E.CONNECTION_TIMEOUT),
        timing=Timing.AT_DEADLINE, bench=True),
    Row("slow-drip", "slow drip of one byte a second",
        smtp=Side(fault(lambda _: drip_server()), STARTTLS, E.CONNECTION_TIMEOUT),
        imap=Side(fault(lambda _: drip_server(b"* OK slow IMAP server ready\r\n")), NONE,
                  E.CONNECTION_TIMEOUT),
        timing=Timing.AT_DEADLINE, bench=True),
    Row("closed-mid-dialogue", "connection closed mid-dialogue (after AUTH / LOGIN was sent)",
        smtp=Side(smtp_replying("AUTH", None), NONE, E.CONNECTION_CLOSED, "AUTH"),
        imap=Side(imap_replying("LOGIN", None), NONE, E.CONNECTION_CLOSED, "LOGIN")),
    Row("garbage-banner", "garbage banner",
        smtp=Side(fault(lambda _: garbage_server()), STARTTLS, E.PROTOCOL_ERROR),
        imap=Side(fault(lambda _: garbage_server()), NONE, E.PROTOCOL_ERROR)),
    # --- throttling ---
    Row("busy",
        "`421` greeting, IMAP `NO [UNAVAILABLE] Maximum number of connections from user+IP "
        "exceeded` (Dovecot's words)",
        smtp=Side(fault(lambda _: scripted_smtp(
            greeting="421 4.7.0 Try again later, closing connection."
        )), STARTTLS, E.SERVER_THROTTLED),
        imap=Side(imap_replying(
            "LOGIN", "NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded"
        ), NONE, E.SERVER_THROTTLED)),
    Row("too-many-logins",
        "`454 4.7.0 Too many login attempts, please try again later.`, IMAP `NO Login "
        "throttled.`",
        smtp=Side(smtp_replying("AUTH", "454 4.7.0 Too many login attempts, please try again "
                                "later."), NONE, E.SERVER_THROTTLED),
        imap=Side(imap_replying("LOGIN", "NO Login throttled."), NONE, E.SERVER_THROTTLED)),
    Row("too-many-connections", "Gmail-style IMAP `NO [ALERT] Too many simultaneous connections`",
        imap=Side(imap_replying("LOGIN", "NO [ALERT] Too many simultaneous connections. "
                                "(Failure)"), NONE, E.SERVER_THROTTLED)),
)


@dataclass(frozen=True)
class Scenario:
    """One protocol of one row: what a test (or the benchmark) runs."""

    row: Row
    protocol: MailProtocol
    side: Side

    @property
    def id(self) -> str:
        return f"{self.protocol}-{self.row.key}"

    @property
    def expected(self) -> ErrorCode | None:
        return self.side.expected


SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(row, protocol, side)
    for row in ROWS
    for protocol, side in ((SMTP, row.smtp), (IMAP, row.imap))
    if side is not None
)


# --- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    result: ProtocolResult
    seconds: float  # from the call to the verdict
    password_seen: bool | None  # None: the server cannot tell


def matrix_prober(pki: TestPKI, timeout: float) -> Prober:
    settings = ProbeSettings(
        timeout_seconds=timeout, allow_networks=LOOPBACK_NETS, extra_ca_file=str(pki.ca_file),
        host_policy=OPEN_POLICY,
    )
    return Prober(settings, resolver=StaticResolver())


def probe(scenario: Scenario, target: Target, prober: Prober) -> Run:
    """Probe the scenario's server (already set up) once, as a worker thread would."""
    secret = Secret(target.token or scenario.row.password)
    endpoint = Endpoint(
        target.host, target.port, scenario.side.encryption, USER, secret, scenario.row.auth
    )
    is_smtp = scenario.protocol == SMTP
    started = time.monotonic()
    account = prober.probe_sync(endpoint if is_smtp else None, None if is_smtp else endpoint)
    seconds = time.monotonic() - started
    seen = target.password_seen
    return Run(
        account.smtp if is_smtp else account.imap,
        seconds,
        None if seen is None else seen(scenario.row.password),
    )


def run(scenario: Scenario, servers: Servers, prober: Prober) -> Run:
    """Set up the scenario's server, probe it once, and tear the server down again."""
    with scenario.side.setup(servers) as target:
        return probe(scenario, target, prober)


# --- the README table --------------------------------------------------------------------------


def _cell(side: Side | None) -> str:
    if side is None:
        return "-"  # the row does not apply to this protocol
    return "success" if side.expected is None else f"`{side.expected}`"


def markdown_table() -> str:
    """The README block: how to read it, then one line per row."""
    lines = [
        "Each row is a test in `tests/app/probe/test_scenarios.py` (data:",
        "`tests/app/probe/scenarios.py`) against Dovecot, aiosmtpd or a fault-injection server.",
        "Time to verdict counts from the call; the deadline is `PROBE_TIMEOUT_SECONDS`. Regenerate",
        "this block with `python -m tests.app.probe.scenarios --write-readme`.",
        "",
        "| scenario | SMTP | IMAP | time to verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row.name} | {_cell(row.smtp)} | {_cell(row.imap)} | {row.timing.value} |"
        for row in ROWS
    ]
    return "\n".join(lines)


def _block_span(text: str) -> tuple[int, int]:
    start = text.index(START_MARKER) + len(START_MARKER)
    return start, text.index(END_MARKER, start)


def readme_block(text: str) -> str:
    """What the README holds between the markers, without the line breaks around it."""
    start, end = _block_span(text)
    return text[start:end].strip("\n")


def write_readme(path: Path = README) -> bool:
    """Rewrite the block between the markers; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    start, end = _block_span(text)
    updated = f"{text[:start]}\n{markdown_table()}\n{text[end:]}"
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true",
                        help=f"rewrite the block between the markers in {README.name}")
    args = parser.parse_args(argv)
    if not args.write_readme:
        print(markdown_table())
    elif write_readme():
        print(f"{README}: scenario matrix rewritten")
    else:
        print(f"{README}: scenario matrix already up to date")


if __name__ == "__main__":
    main()
