"""The classification table against every provider text in the field notes, and defaults."""

from __future__ import annotations

import pytest

from app.probe.classify import (
    RULES,
    classify,
    classify_imap,
    classify_smtp,
    imap_response_code,
    oauth_refusal,
)
from app.probe.errors import ProbeError
from app.probe.hints import GENERIC_HINTS, hint_for
from app.probe.model import ErrorCode as E
from app.probe.model import MailProtocol
from app.probe.smtp import Reply

# Verbatim from /work/shared/NOTES.md, "What real providers say when a login fails", with the
# provider (as the API names it) each text comes from.
# A default the table never produces proves that the verdict came from a rule.
NOTES_SMTP = [
    ("534-5.7.9 Application-specific password required", "gmail", E.APP_PASSWORD_REQUIRED),
    ("535-5.7.8 Username and Password not accepted", "gmail", E.AUTH_FAILED),
    ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled.", "o365",
     E.BASIC_AUTH_DISABLED),
    ("535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant", "o365",
     E.BASIC_AUTH_DISABLED),
    ("535 5.7.139 ... the user credentials were incorrect.", "o365", E.AUTH_FAILED),
    ("535 5.7.3 Authentication unsuccessful", "o365", E.AUTH_FAILED),
    ("535 5.7.0 (#AUTH005) Too many bad auth attempts.", "yahoo", E.ACCOUNT_LOCKED),
    ("550 5.7.30 Basic authentication is not supported for Client Submission", "o365",
     E.BASIC_AUTH_DISABLED),
    ("535 Authentication Failed", "zoho", E.AUTH_FAILED),
]
NOTES_IMAP = [
    ("NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", "gmail", E.AUTH_FAILED),
    ("NO [ALERT] Application-specific password required: ...", "gmail",
     E.APP_PASSWORD_REQUIRED),
    ("NO [ALERT] Please log in via your web browser: ...", "gmail", E.WEB_LOGIN_REQUIRED),
    ("NO [WEBALERT <url>] Web login required", "gmail", E.WEB_LOGIN_REQUIRED),
    ("NO [ALERT] Too many simultaneous connections. (Failure)", "gmail", E.SERVER_THROTTLED),
    ("BAD User is authenticated but not connected.", "o365", E.AUTH_FAILED),
    ("NO [AUTHENTICATIONFAILED] LOGIN Invalid credentials", "yahoo", E.APP_PASSWORD_REQUIRED),
    ("NO [AUTHENTICATIONFAILED] LOGIN Invalid credentials or IMAP is disabled", "yandex",
     E.BASIC_AUTH_DISABLED),
    ("NO Invalid credentials", "zoho", E.AUTH_FAILED),
    ("NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded", "custom",
     E.SERVER_THROTTLED),  # Dovecot
]
NOTES_TLS = "ssl3_get_record:wrong version number"

# The same situations as providers really word them in full, multi-line replies included.
FULL_SMTP = [
    ("534-5.7.9 Application-specific password required. Learn more at\n"
     "534 5.7.9 https://support.google.com/mail/?p=InvalidSecondFactor", E.APP_PASSWORD_REQUIRED),
    ("534-5.7.9 Application-specific password required. Learn more at\n"
     "534-5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor\n"
     "534 5.7.9 d9443c01a7336-2e6b0e4f1a2sm1234567pla.12 - gsmtp", E.APP_PASSWORD_REQUIRED),
    ("534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1> Please log in via your\n"
     "534-5.7.14 web browser and then try again.", E.WEB_LOGIN_REQUIRED),
    ("535-5.7.8 Username and Password not accepted. For more information, go to\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials", E.AUTH_FAILED),
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
     "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
     E.BASIC_AUTH_DISABLED),
    ("535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
     E.AUTH_FAILED),
    ("535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
     "authenticated successfully. Contact your administrator.", E.BASIC_AUTH_DISABLED),
    ("454 4.7.0 Too many login attempts, please try again later.", E.SERVER_THROTTLED),
    ("421 4.7.0 Try again later, closing connection.", E.SERVER_THROTTLED),
    ("454 4.7.0 Temporary authentication failure", E.SERVER_THROTTLED),
    ("504 5.5.4 Unrecognized authentication type", E.AUTH_MECHANISM_UNSUPPORTED),
    ("538 5.7.11 Encryption required for requested authentication mechanism",
     E.AUTH_MECHANISM_UNSUPPORTED),
    ("535 5.7.8 Error: authentication failed: authentication failure", E.AUTH_FAILED),
]
FULL_IMAP = [
    ("NO [WEBALERT https://accounts.google.com/signin/continue?sarp=1] Web login required.",
     E.WEB_LOGIN_REQUIRED),
    ("NO [ALERT] Application-specific password required: "
     "https://support.google.com/accounts/answer/185833 (Failure)", E.APP_PASSWORD_REQUIRED),
    ("NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings "
     "page and enable your account for IMAP access. (Failure)", E.BASIC_AUTH_DISABLED),
    ("NO [AUTHENTICATIONFAILED] Authentication failed.", E.AUTH_FAILED),  # Dovecot
    ("NO [UNAVAILABLE] Temporary authentication failure. [host:2024-01-01]", E.SERVER_THROTTLED),
    ("BYE Too many connections, try again later", E.SERVER_THROTTLED),
    ("NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.",
     E.AUTH_MECHANISM_UNSUPPORTED),
]


def smtp_reply(raw: str) -> Reply:
    """A reply as the probe assembles it from the wire ('534-...\\n534 ...' lines), so the
    classifier sees exactly the text it sees in production (enhanced code kept once)."""
    lines = raw.split("\n")
    return Reply(int(lines[0][:3]), tuple(line[4:] for line in lines))


def test_multi_line_reply_text_is_one_line_with_the_enhanced_code_once() -> None:
    reply = smtp_reply(FULL_SMTP[0][0])
    assert reply.text == (
        "5.7.9 Application-specific password required. Learn more at "
        "https://support.google.com/mail/?p=InvalidSecondFactor"
    )


@pytest.mark.parametrize(("raw", "expected"), [(r, c) for r, _, c in NOTES_SMTP] + FULL_SMTP)
def test_smtp_texts(raw: str, expected: E) -> None:
    reply = smtp_reply(raw)
    assert classify_smtp(reply.code, reply.text, default=E.PROTOCOL_ERROR).code == expected


@pytest.mark.parametrize(("response", "expected"), [(r, c) for r, _, c in NOTES_IMAP] + FULL_IMAP)
def test_imap_texts(response: str, expected: E) -> None:
    assert classify_imap(response, default=E.PROTOCOL_ERROR).code == expected


@pytest.mark.parametrize(("text", "provider", "code"), NOTES_SMTP + NOTES_IMAP)
def test_notes_texts_get_their_providers_hint(text: str, provider: str, code: E) -> None:
    hint = hint_for(code, provider, text)
    assert hint is not None
    if provider != "custom":  # Dovecot: nobody's settings page to point at
        assert hint != GENERIC_HINTS[code], f"{provider} has no hint of its own for {code}"


def test_wrong_version_number_is_a_handshake_failure() -> None:
    for protocol in MailProtocol:
        verdict = classify(protocol, None, NOTES_TLS, E.PROTOCOL_ERROR)
        assert verdict.code == E.TLS_HANDSHAKE_FAILED


def test_unmatched_text_gets_the_callers_default() -> None:
    assert classify_smtp("550", "5.1.1 whatever", E.AUTH_FAILED).code == E.AUTH_FAILED
    assert classify_imap("NO Mailbox doesn't exist: INBOX", E.MAILBOX_UNAVAILABLE).code == (
        E.MAILBOX_UNAVAILABLE
    )
    assert classify_imap("BYE shutting down", E.CONNECTION_CLOSED).code == E.CONNECTION_CLOSED


def test_same_code_different_meaning_is_decided_by_text() -> None:
    base = "5.7.139 Authentication unsuccessful, "
    disabled = classify_smtp(535, base + "basic authentication is disabled.").code
    wrong = classify_smtp(535, base + "the user credentials were incorrect.").code
    assert (disabled, wrong) == (E.BASIC_AUTH_DISABLED, E.AUTH_FAILED)


def test_unusable_login_note_explains() -> None:
    verdict = classify_imap("BAD User is authenticated but not connected.", E.MAILBOX_UNAVAILABLE)
    assert verdict.code == E.AUTH_FAILED
    assert verdict.note and "not usable" in verdict.note


def test_imap_response_code() -> None:
    assert imap_response_code("NO [AUTHENTICATIONFAILED] x") == "AUTHENTICATIONFAILED"
    assert imap_response_code("NO [WEBALERT https://x.example/y] Web login") == "WEBALERT"
    assert imap_response_code("BYE [UNAVAILABLE] later") == "UNAVAILABLE"
    assert imap_response_code("NO plain text") is None


def test_table_is_data() -> None:
    assert len(RULES) > 20
    assert all(rule.pattern is not None or rule.code is not None for rule in RULES)


def test_exchange_online_5_7_30_is_basic_auth_disabled_with_the_oauth2_hint() -> None:
    text = "5.7.30 Basic authentication is not supported for Client Submission"
    verdict = classify_smtp(550, text, default=E.PROTOCOL_ERROR)
    assert verdict.code == E.BASIC_AUTH_DISABLED
    hint = hint_for(verdict.code, "custom", f"550 {text}")  # a tenant behind a custom domain
    assert hint is not None and "authType oauth2" in hint and "SMTP.Send" in hint


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (E.AUTH_FAILED, E.OAUTH_TOKEN_INVALID),  # "535 5.7.8 Authentication failed"
        (E.APP_PASSWORD_REQUIRED, E.OAUTH_TOKEN_INVALID),
        (E.SERVER_THROTTLED, E.SERVER_THROTTLED),
        (E.ACCOUNT_LOCKED, E.ACCOUNT_LOCKED),
        (E.BASIC_AUTH_DISABLED, E.BASIC_AUTH_DISABLED),  # SMTP AUTH off for the tenant
        (E.AUTH_MECHANISM_UNSUPPORTED, E.AUTH_MECHANISM_UNSUPPORTED),
    ],
)
def test_oauth_refusal_turns_password_verdicts_into_token_ones(code: E, expected: E) -> None:
    refused = oauth_refusal(ProbeError(code, "535 x"), "status 401")
    assert refused.code == expected
    assert refused.message == "535 x (token refused: status 401)"
    assert oauth_refusal(ProbeError(code, "535 x"), None).message == "535 x"
