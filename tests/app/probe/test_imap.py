"""IMAP probes against the scripted IMAP server in tests/servers/faults.py, on loopback.

Which code each situation gets is the scenario matrix's job (test_scenarios.py); these tests
check the rest: what was sent and how (quoting, literals, SASL), exact stored texts, scrubbing.
"""

from __future__ import annotations

import time

import pytest

from app.probe import Encryption, ErrorCode, Prober, ProtocolResult
from tests.app.probe.conftest import PASSWORD, USER, endpoint
from tests.servers.faults import closing_server, scripted_imap, server_tls_context

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


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("NO [WEBALERT https://accounts.google.com/signin/continue?sarp=1] Web login required.",
         ErrorCode.WEB_LOGIN_REQUIRED),
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


