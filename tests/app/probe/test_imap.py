"""IMAP probes against the scripted IMAP server in tests/servers/faults.py, on loopback."""

from __future__ import annotations

import time

import pytest

from app.probe import Encryption, ErrorCode, Prober, ProtocolResult
from tests.app.probe.conftest import PASSWORD, TIMEOUT, USER, endpoint
from tests.servers.faults import (
    closing_server,
    drip_server,
    scripted_imap,
    server_tls_context,
    silent_server,
)
from tests.servers.smtp import SmtpServer

FAST = 1.0
SSL, STARTTLS, NONE = Encryption.SSL, Encryption.STARTTLS, Encryption.NONE
USERS = {USER: PASSWORD}


def imap(prober: Prober, port: int, encryption: Encryption = NONE, **kw) -> ProtocolResult:
    return prober.probe_sync(None, endpoint(port, encryption, **kw)).imap


def timed(prober: Prober, port: int, encryption: Encryption = NONE, **kw):
    started = time.monotonic()
    result = imap(prober, port, encryption, **kw)
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def tls(pki):
    return server_tls_context(pki.good)


def test_good_login_plaintext(prober) -> None:
    with scripted_imap(USERS) as server:
        result, elapsed = timed(prober, server.port)
    assert result.ok, result
    assert elapsed < FAST
    received = server.received_text()
    assert f'LOGIN "{USER}" "{PASSWORD}"' in received
    assert "EXAMINE INBOX" in received and "LOGOUT" in received
    assert "CAPABILITY" not in received  # already in the greeting


def test_good_login_implicit_tls(prober, tls) -> None:
    with scripted_imap(USERS, implicit_tls=tls) as server:
        assert imap(prober, server.port, SSL).ok
    assert server.logins == [(USER, PASSWORD)]


def test_good_login_starttls(prober, tls) -> None:
    with scripted_imap(USERS, starttls=tls) as server:
        assert imap(prober, server.port, STARTTLS).ok
    received = server.received_text()
    assert received.index("STARTTLS") < received.index("LOGIN")
    assert "CAPABILITY" in received  # asked again after TLS, as RFC 3501 requires


def test_capability_asked_when_not_in_greeting(prober) -> None:
    with scripted_imap(USERS, capabilities_in_greeting=False) as server:
        assert imap(prober, server.port).ok
    assert "CAPABILITY" in server.received_text()


def test_wrong_password(prober) -> None:
    with scripted_imap(USERS) as server:
        result = imap(prober, server.port, password="nope")
    assert result.error_code == ErrorCode.AUTH_FAILED
    assert result.error == "NO [AUTHENTICATIONFAILED] Authentication failed."


@pytest.mark.parametrize(
    "password", ['quote " and \\ back', "pässwörd-ünïcode", "line\r\nbreak", "", "{5}"]
)
def test_awkward_passwords_are_sent_exactly(prober, password: str) -> None:
    with scripted_imap({USER: password}) as server:
        result = imap(prober, server.port, password=password)
    assert result.ok, result
    assert server.logins == [(USER, password)]


def test_non_synchronizing_literal_with_literal_plus(prober) -> None:
    password = "pässwörd"
    caps = ("IMAP4rev1", "LITERAL+")
    with scripted_imap({USER: password}, capabilities=caps) as server:
        assert imap(prober, server.port, password=password).ok
    assert "{10+}" in server.received_text()


def test_non_ascii_username_uses_a_literal(prober) -> None:
    user = "jürgen@exämple.de"
    with scripted_imap({user: PASSWORD}) as server:
        assert imap(prober, server.port, username=user).ok
    assert server.logins == [(user, PASSWORD)]


@pytest.mark.parametrize("sasl_ir", [True, False])
def test_authenticate_plain_when_login_disabled(prober, tls, sasl_ir: bool) -> None:
    caps = ("IMAP4rev1", "AUTH=PLAIN", *(("SASL-IR",) if sasl_ir else ()))
    with scripted_imap(USERS, capabilities=caps, login_disabled=True, implicit_tls=tls) as server:
        assert imap(prober, server.port, SSL).ok
    assert "AUTHENTICATE PLAIN" in server.received_text()
    assert " LOGIN " not in server.received_text()


def test_login_disabled_and_no_plain(prober, tls) -> None:
    caps = ("IMAP4rev1", "AUTH=GSSAPI")
    with scripted_imap(USERS, capabilities=caps, login_disabled=True, starttls=tls) as server:
        result = imap(prober, server.port, STARTTLS)
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert PASSWORD not in server.received_text()


def test_starttls_not_offered_never_sends_password(prober) -> None:
    with scripted_imap(USERS) as server:
        result = imap(prober, server.port, STARTTLS)
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    assert "LOGIN" not in server.received_text() and PASSWORD not in server.received_text()


def test_preauth_skips_login_but_refuses_starttls(prober) -> None:
    with scripted_imap(USERS, greeting="* PREAUTH [CAPABILITY IMAP4rev1] welcome back") as s:
        assert imap(prober, s.port).ok  # nothing to log in to; the mailbox is still examined
        result = imap(prober, s.port, STARTTLS)
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    assert "LOGIN" not in s.received_text()


def test_examine_failing_is_mailbox_unavailable(prober) -> None:
    with scripted_imap(USERS, replies={"EXAMINE": "NO Mailbox doesn't exist: INBOX"}) as s:
        result = imap(prober, s.port)
    assert result.error_code == ErrorCode.MAILBOX_UNAVAILABLE
    assert result.error == "NO Mailbox doesn't exist: INBOX"


def test_authenticated_but_not_connected(prober) -> None:
    replies = {"EXAMINE": "BAD User is authenticated but not connected."}
    with scripted_imap(USERS, replies=replies) as server:
        result = imap(prober, server.port)
    assert result.error_code == ErrorCode.AUTH_FAILED
    assert result.error is not None
    assert "User is authenticated but not connected" in result.error
    assert "not usable" in result.error


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("NO [ALERT] Application-specific password required: "
         "https://support.google.com/accounts/answer/185833 (Failure)",
         ErrorCode.APP_PASSWORD_REQUIRED),
        ("NO [WEBALERT https://accounts.google.com/signin/continue?sarp=1] Web login required.",
         ErrorCode.WEB_LOGIN_REQUIRED),
        ("NO [ALERT] Please log in via your web browser: https://support.google.com/ (Failure)",
         ErrorCode.WEB_LOGIN_REQUIRED),
        ("NO [ALERT] Too many simultaneous connections. (Failure)", ErrorCode.SERVER_THROTTLED),
        ("NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded",
         ErrorCode.SERVER_THROTTLED),
        ("NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", ErrorCode.AUTH_FAILED),
        ("NO [AUTHENTICATIONFAILED] LOGIN Invalid credentials", ErrorCode.APP_PASSWORD_REQUIRED),
    ],
)
def test_login_reply_classified(prober, reply: str, code: ErrorCode) -> None:
    with scripted_imap(USERS, replies={"LOGIN": reply}) as server:
        result = imap(prober, server.port)
    assert result.error_code == code
    assert result.error is not None and result.error.startswith(reply[:40])


def test_untagged_alert_decides_when_tagged_is_terse(prober) -> None:
    with scripted_imap(
        USERS,
        replies={"LOGIN": "NO LOGIN failed."},
        untagged_before={"LOGIN": ["NO [WEBALERT https://x.example/] Web login required"]},
    ) as server:
        result = imap(prober, server.port)
    assert result.error_code == ErrorCode.WEB_LOGIN_REQUIRED
    assert "NO LOGIN failed." in (result.error or "")


def test_bye_then_hang_up_uses_the_bye_text(prober) -> None:
    with scripted_imap(
        USERS, replies={"LOGIN": None}, untagged_before={"LOGIN": ["BYE Too many connections"]}
    ) as server:
        result = imap(prober, server.port)
    assert result.error_code == ErrorCode.SERVER_THROTTLED
    assert "Too many connections" in (result.error or "")


@pytest.mark.parametrize(
    ("greeting", "code"),
    [
        ("* BYE [UNAVAILABLE] Too many simultaneous connections", ErrorCode.SERVER_THROTTLED),
        ("* BYE Server shutting down", ErrorCode.CONNECTION_CLOSED),
    ],
)
def test_bye_greeting(prober, greeting: str, code: ErrorCode) -> None:
    with scripted_imap(USERS, greeting=greeting) as server:
        result, elapsed = timed(prober, server.port)
    assert result.error_code == code
    assert elapsed < FAST


def test_login_echo_is_scrubbed(prober) -> None:
    password = 'echo"me\\please'
    with scripted_imap({USER: password}, replies={"LOGIN": "BAD Bad syntax: {received}"}) as s:
        result = imap(prober, s.port, password=password)
    assert result.error is not None and "Bad syntax" in result.error
    assert 'echo\\"me\\\\please' in s.received_text()  # the server did get (and echo) it
    assert "echo" not in result.error and "please" not in result.error


def test_authenticate_echo_is_scrubbed(prober) -> None:
    replies = {"AUTHENTICATE": "NO cannot decode {received}"}
    caps = ("IMAP4rev1", "AUTH=PLAIN", "SASL-IR")
    with scripted_imap(USERS, replies=replies, capabilities=caps, login_disabled=True) as s:
        result = imap(prober, s.port)
    assert result.error is not None and "cannot decode" in result.error
    assert "********" in result.error


# --- transport faults and mix-ups ----------------------------------------------------------------


def test_close_mid_dialogue(prober) -> None:
    with scripted_imap(USERS, replies={"EXAMINE": None}) as server:
        result, elapsed = timed(prober, server.port)
    assert result.error_code == ErrorCode.CONNECTION_CLOSED
    assert elapsed < FAST


def test_close_during_greeting(prober) -> None:
    with closing_server(b"* OK half") as server:
        assert imap(prober, server.port).error_code == ErrorCode.CONNECTION_CLOSED


@pytest.mark.parametrize("encryption", [SSL, STARTTLS])
def test_silent_server_hits_the_deadline(prober, encryption) -> None:
    with silent_server() as server:
        result, elapsed = timed(prober, server.port, encryption)
    assert result.error_code == ErrorCode.CONNECTION_TIMEOUT
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.0


def test_slow_drip_hits_the_deadline(prober) -> None:
    with drip_server(b"* OK slow IMAP server ready\r\n") as server:
        result, elapsed = timed(prober, server.port)
    assert result.error_code == ErrorCode.CONNECTION_TIMEOUT
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.0


def test_implicit_tls_against_plaintext_imap_fails_fast(prober) -> None:
    with scripted_imap(USERS) as server:
        result, elapsed = timed(prober, server.port, SSL)
    assert result.error_code == ErrorCode.TLS_HANDSHAKE_FAILED
    assert elapsed < FAST
    assert PASSWORD not in server.received_text()


def test_starttls_against_implicit_tls_imap(prober, tls) -> None:
    with scripted_imap(USERS, implicit_tls=tls) as server:
        result, elapsed = timed(prober, server.port, STARTTLS)
    assert result.error_code == ErrorCode.TLS_HANDSHAKE_FAILED
    assert "implicit TLS (ssl)" in (result.error or "")
    assert elapsed < TIMEOUT - 0.5


def test_imap_row_pointed_at_smtp_port(prober, smtp_server: SmtpServer) -> None:
    result, elapsed = timed(prober, smtp_server.plain_port)
    assert result.error_code == ErrorCode.PROTOCOL_ERROR
    assert "SMTP" in (result.error or "")
    assert elapsed < FAST
    result = imap(prober, smtp_server.ssl_port, SSL)
    assert result.error_code == ErrorCode.PROTOCOL_ERROR


def test_echo_of_a_literal_is_not_read_as_one(prober) -> None:
    password = "pässwörd"
    with scripted_imap({USER: password}, replies={"LOGIN": "BAD Bad syntax: {received}"}) as s:
        result, elapsed = timed(prober, s.port, password=password)
    assert result.error_code == ErrorCode.PROTOCOL_ERROR  # BAD: the server did not understand
    assert elapsed < FAST
    assert "pässwörd" not in (result.error or "")


def test_untagged_literal_is_read_whole(prober) -> None:
    extra = {"EXAMINE": ['LIST () "/" {7}\r\nINBOX\r\n', "OK [UIDVALIDITY 1] ok"]}
    with scripted_imap(USERS, untagged_before=extra) as server:
        assert imap(prober, server.port).ok


@pytest.mark.parametrize("cert", ["self_signed", "expired", "wrong_host"])
@pytest.mark.parametrize("encryption", [SSL, STARTTLS])
def test_bad_certificate(prober, pki, cert: str, encryption) -> None:
    context = server_tls_context(getattr(pki, cert))
    option = {"implicit_tls": context} if encryption == SSL else {"starttls": context}
    with scripted_imap(USERS, **option) as server:
        result, elapsed = timed(prober, server.port, encryption)
    assert result.error_code == ErrorCode.TLS_CERTIFICATE_INVALID
    assert elapsed < FAST
    assert "LOGIN" not in server.received_text()
