"""Encryption not given (Encryption.AUTO): implicit TLS first, then STARTTLS, never plaintext.

Against real servers: Dovecot's four listeners, aiosmtpd's three, and scripted servers that
speak plaintext without STARTTLS (which must never see a credential).
"""

from __future__ import annotations

import time

import pytest

from app.probe import Encryption, ErrorCode, Prober
from app.probe.streams import MailStream
from tests.app.probe.conftest import PASSWORD, TIMEOUT, USER, endpoint
from tests.conftest import USERS
from tests.servers.dovecot import DovecotServer
from tests.servers.faults import scripted_imap, scripted_smtp, silent_server
from tests.servers.smtp import SmtpServer

AUTO, SSL, STARTTLS = Encryption.AUTO, Encryption.SSL, Encryption.STARTTLS
ALICE = "alice@example.test"


def dovecot_endpoint(port: int | None, password: str = USERS[ALICE]):
    if port is None:
        pytest.fail("this Dovecot serves no submission; run with Dovecot installed")
    return endpoint(port, AUTO, username=ALICE, password=password)


@pytest.mark.parametrize(("smtp_port", "imap_port", "found"), [
    ("submissions_port", "imaps_port", SSL),
    ("submission_port", "imap_port", STARTTLS),
])
def test_dovecot_ports_detected(prober: Prober, mail_server: DovecotServer, smtp_port: str,
                                imap_port: str, found: Encryption) -> None:
    account = prober.probe_sync(dovecot_endpoint(getattr(mail_server, smtp_port)),
                                dovecot_endpoint(getattr(mail_server, imap_port)))
    assert account.smtp.ok and account.imap.ok, account
    assert account.smtp.detected is found and account.imap.detected is found


@pytest.mark.parametrize(("port", "found"), [("ssl_port", SSL), ("starttls_port", STARTTLS)])
def test_aiosmtpd_ports_detected(prober: Prober, smtp_server: SmtpServer, port: str,
                                 found: Encryption) -> None:
    result = prober.probe_sync(endpoint(getattr(smtp_server, port), AUTO), None).smtp
    assert result.ok, result
    assert result.detected is found


def test_a_given_encryption_is_not_reported_as_detected(prober: Prober,
                                                        smtp_server: SmtpServer) -> None:
    result = prober.probe_sync(endpoint(smtp_server.ssl_port, SSL), None).smtp
    assert result.ok and result.detected is None


def test_the_mode_is_found_even_when_the_login_fails(prober: Prober,
                                                     mail_server: DovecotServer) -> None:
    # Worth saving: the next test of the account uses it instead of detecting again.
    account = prober.probe_sync(dovecot_endpoint(mail_server.submission_port, "wrong"),
                                dovecot_endpoint(mail_server.imaps_port, "wrong"))
    assert account.smtp.error_code == account.imap.error_code == ErrorCode.AUTH_FAILED
    assert (account.smtp.detected, account.imap.detected) == (STARTTLS, SSL)


def test_plaintext_smtp_without_starttls_never_gets_the_password(
        prober: Prober, smtp_server: SmtpServer) -> None:
    # aiosmtpd's plain port would accept AUTH in the clear; only `none` may send it there.
    before = len(smtp_server.auth_attempts)
    result = prober.probe_sync(endpoint(smtp_server.plain_port, AUTO), None).smtp
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    assert "password was not sent" in result.error and "encryption none" in result.error
    assert result.detected is None
    assert len(smtp_server.auth_attempts) == before


def test_plaintext_scripted_smtp_never_sees_auth(prober: Prober) -> None:
    with scripted_smtp(users={USER: PASSWORD}) as server:
        result = prober.probe_sync(endpoint(server.port, AUTO), None).smtp
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    assert server.connections == 2, "one for the TLS try, one for STARTTLS"
    assert "EHLO" in server.received_text()
    assert "AUTH" not in server.received_text() and server.logins == []


def test_plaintext_imap_without_starttls_never_sees_login(prober: Prober) -> None:
    with scripted_imap({USER: PASSWORD}) as server:
        result = prober.probe_sync(None, endpoint(server.port, AUTO)).imap
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    received = server.received_text().upper()
    assert "LOGIN" not in received and "AUTHENTICATE" not in received
    assert server.logins == []


@pytest.mark.parametrize("port", ["ssl_port", "starttls_port"])
def test_certificates_are_still_verified(prober: Prober, untrusted_smtp_server: SmtpServer,
                                         port: str) -> None:
    result = prober.probe_sync(endpoint(getattr(untrusted_smtp_server, port), AUTO), None).smtp
    assert result.error_code == ErrorCode.TLS_CERTIFICATE_INVALID
    assert result.detected is None


def test_a_silent_port_times_out_within_the_one_deadline(prober: Prober) -> None:
    with silent_server() as server:
        started = time.monotonic()
        result = prober.probe_sync(endpoint(server.port, AUTO), None).smtp
        elapsed = time.monotonic() - started
    assert result.error_code == ErrorCode.CONNECTION_TIMEOUT
    assert elapsed < TIMEOUT + 1  # the deadline covers the detection too


@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_a_greeting_that_arrives_before_the_handshake_means_plaintext(
        prober: Prober, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    # The greeting is in the stream's buffer before detection starts (a fast server on a
    # short path). These servers never answer a ClientHello: a handshake would hang.
    opened = MailStream.open

    async def open_after_the_greeting(ip: str, port: int, **kwargs) -> MailStream:
        stream = await opened(ip, port, **kwargs)
        await stream.wait_readable()
        return stream

    monkeypatch.setattr(MailStream, "open", staticmethod(open_after_the_greeting))
    started = time.monotonic()
    if protocol == "smtp":
        with scripted_smtp(users={USER: PASSWORD}) as server:
            result = prober.probe_sync(endpoint(server.port, AUTO), None).smtp
    else:
        with scripted_imap({USER: PASSWORD}) as server:
            result = prober.probe_sync(None, endpoint(server.port, AUTO)).imap
    assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
    assert server.connections == 2 and server.logins == []
    assert time.monotonic() - started < TIMEOUT
