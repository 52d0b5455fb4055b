"""SMTP probes against a real aiosmtpd server and scripted/faulty ones, all on loopback.

Which code each situation gets is the scenario matrix's job (test_scenarios.py); these tests
check the rest: exact stored texts, scrubbing, mechanisms, what reached the server.
"""

from __future__ import annotations

import time

import pytest

from app.probe import Encryption, ErrorCode, Prober, ProbeSettings, ProtocolResult
from app.probe.policy import OPEN_POLICY
from tests.app.probe.conftest import LOOPBACK_NETS, PASSWORD, TIMEOUT, USER, endpoint
from tests.app.probe.scenarios import password_forms
from tests.servers.faults import (
    bad_cert_smtp,
    closing_server,
    garbage_server,
    scripted_smtp,
    server_tls_context,
)
from tests.servers.smtp import SmtpServer, start_smtp_server

FAST = 1.0  # seconds: verdicts that need no waiting
SSL, STARTTLS, NONE = Encryption.SSL, Encryption.STARTTLS, Encryption.NONE


def smtp(prober: Prober, port: int, encryption: Encryption = STARTTLS, **kw) -> ProtocolResult:
    return prober.probe_sync(endpoint(port, encryption, **kw), None).smtp


def timed(prober: Prober, port: int, encryption: Encryption = STARTTLS, **kw):
    started = time.monotonic()
    result = smtp(prober, port, encryption, **kw)
    return result, time.monotonic() - started


# --- the real server ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port_name", "encryption"),
    [("starttls_port", STARTTLS), ("ssl_port", SSL), ("plain_port", NONE)],
)
def test_wrong_password(prober, smtp_server: SmtpServer, port_name: str, encryption) -> None:
    result = smtp(prober, getattr(smtp_server, port_name), encryption, password="wrong")
    assert result.error_code == ErrorCode.AUTH_FAILED
    assert result.error == "535 5.7.8 Authentication credentials invalid"


def test_ip_literal_host(prober, smtp_server: SmtpServer) -> None:
    assert smtp(prober, smtp_server.ssl_port, SSL, host="127.0.0.1").ok


def test_untrusted_ca_without_extra_ca_file(smtp_server: SmtpServer) -> None:
    prober = Prober(ProbeSettings(timeout_seconds=TIMEOUT, allow_networks=LOOPBACK_NETS,
                                  host_policy=OPEN_POLICY))
    result = smtp(prober, smtp_server.ssl_port, SSL)
    assert result.error_code == ErrorCode.TLS_CERTIFICATE_INVALID
    assert "certificate" in (result.error or "")


def test_starttls_on_plaintext_only_real_server(pki) -> None:
    prober = Prober(ProbeSettings(timeout_seconds=TIMEOUT, allow_networks=LOOPBACK_NETS,
                                  host_policy=OPEN_POLICY))
    with start_smtp_server(pki, {USER: PASSWORD}) as server:
        result = smtp(prober, server.plain_port, STARTTLS)
        assert result.error_code == ErrorCode.STARTTLS_UNSUPPORTED
        assert server.auth_attempts == []


def test_starttls_reply_with_injected_data_is_refused(prober, pki) -> None:
    context = server_tls_context(pki.good)
    with scripted_smtp({"STARTTLS": "220 2.0.0 go ahead\n250 injected"}, starttls=context) as s:
        result = smtp(prober, s.port, STARTTLS)
    assert result.error_code == ErrorCode.PROTOCOL_ERROR
    assert "injection" in (result.error or "")
    assert PASSWORD not in s.received_text()


def test_scripted_starttls_then_login(prober, pki) -> None:
    with scripted_smtp(starttls=server_tls_context(pki.good), users={USER: PASSWORD}) as s:
        assert smtp(prober, s.port, STARTTLS).ok
    assert s.logins == [(USER, PASSWORD)]
    assert "STARTTLS" in s.received_text()


# --- provider replies, scripted -----------------------------------------------------------------

GMAIL_APP_PASSWORD = (
    "534-5.7.9 Application-specific password required. Learn more at\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor"
)
GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials"
)


@pytest.mark.parametrize(
    ("reply", "code", "stored"),
    [
        (GMAIL_APP_PASSWORD, ErrorCode.APP_PASSWORD_REQUIRED,
         "534 5.7.9 Application-specific password required. Learn more at "
         "https://support.google.com/mail/?p=InvalidSecondFactor"),
        (GMAIL_BAD_CREDENTIALS, ErrorCode.AUTH_FAILED,
         "535 5.7.8 Username and Password not accepted. For more information, go to "
         "https://support.google.com/mail/?p=BadCredentials"),
    ],
)
def test_auth_reply_classified(prober, reply: str, code: ErrorCode, stored: str | None) -> None:
    with scripted_smtp({"AUTH": reply}) as server:
        result = smtp(prober, server.port, NONE)
    assert result.error_code == code
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith(reply[:3])
    if stored is not None:
        assert result.error == stored


@pytest.mark.parametrize("mechanisms", ["PLAIN", "LOGIN", "PLAIN LOGIN"])
def test_auth_echo_is_scrubbed(prober, mechanisms: str) -> None:
    with scripted_smtp(
        {"AUTH": "501 5.5.2 Cannot decode response: {received}"}, auth_mechanisms=mechanisms
    ) as server:
        result = smtp(prober, server.port, NONE)
    assert result.error is not None and "Cannot decode" in result.error
    assert not any(form in result.error for form in password_forms(USER, PASSWORD))
    assert "********" in result.error
    # ...and it really was echoed: the server got exactly these forms.
    assert any(form in server.received_text() for form in password_forms(USER, PASSWORD)[1:])


def test_login_mechanism_when_plain_is_missing(prober) -> None:
    with scripted_smtp(auth_mechanisms="LOGIN CRAM-MD5", users={USER: PASSWORD}) as server:
        assert smtp(prober, server.port, NONE).ok
    assert server.logins == [(USER, PASSWORD)]
    assert "AUTH LOGIN" in server.received_text()


def test_no_usable_mechanism(prober) -> None:
    with scripted_smtp(auth_mechanisms="CRAM-MD5 XOAUTH2") as server:
        result = smtp(prober, server.port, NONE)
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert "CRAM-MD5" in (result.error or "")
    assert "AUTH" not in server.received_text()


def test_no_auth_offered_in_the_clear(prober) -> None:
    with scripted_smtp(auth_mechanisms=None) as server:
        result = smtp(prober, server.port, NONE)
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert "unencrypted" in (result.error or "")


def test_helo_fallback_when_ehlo_rejected(prober) -> None:
    with scripted_smtp({"EHLO": "502 5.5.1 EHLO not implemented"}) as server:
        result = smtp(prober, server.port, NONE)
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert "HELO mailconnect.localdomain" in server.received_text()


def test_multiline_greeting_and_quit_errors_ignored(prober) -> None:
    script = {"GREETING": "220-fault.test ESMTP\n220-second line\n220 ready", "QUIT": None}
    with scripted_smtp(script) as server:
        result, elapsed = timed(prober, server.port, NONE)
    assert result.ok
    assert elapsed < FAST


@pytest.mark.parametrize(
    ("greeting", "code"),
    [
        ("421 4.7.0 Try again later, closing connection.", ErrorCode.SERVER_THROTTLED),
        ("554 5.7.1 Your IP is on a blocklist", ErrorCode.CONNECTION_CLOSED),
    ],
)
def test_greeting_refusal(prober, greeting: str, code: ErrorCode) -> None:
    with scripted_smtp(greeting=greeting) as server:
        result = smtp(prober, server.port, STARTTLS)
    assert result.error_code == code
    assert result.error == greeting


# --- transport faults ---------------------------------------------------------------------------


def test_endless_line_is_protocol_error(prober) -> None:
    with garbage_server(b"220 " + b"x" * 200_000) as server:
        result, elapsed = timed(prober, server.port, NONE)
    assert result.error_code == ErrorCode.PROTOCOL_ERROR
    assert elapsed < FAST


@pytest.mark.parametrize("banner", [b"", b"220 half a gree"])
def test_close_before_greeting(prober, banner: bytes) -> None:
    with closing_server(banner) as server:
        result, elapsed = timed(prober, server.port, STARTTLS)
    assert result.error_code == ErrorCode.CONNECTION_CLOSED
    assert elapsed < FAST


def test_close_after_ehlo_names_the_stage(prober) -> None:
    with scripted_smtp({"EHLO": None}) as server:
        result, elapsed = timed(prober, server.port, NONE)
    assert result.error_code == ErrorCode.CONNECTION_CLOSED
    assert "EHLO" in (result.error or "")
    assert elapsed < FAST


@pytest.mark.parametrize("implicit", [True, False])
def test_bad_certificate_never_gets_the_password(prober, pki, implicit: bool) -> None:
    with bad_cert_smtp(pki.self_signed, implicit=implicit) as server:
        result = smtp(prober, server.port, SSL if implicit else STARTTLS)
    assert result.error_code == ErrorCode.TLS_CERTIFICATE_INVALID
    assert "AUTH" not in server.received_text()
