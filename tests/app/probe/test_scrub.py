"""Stored messages never hold the password, in any encoding the probe put on the wire."""

from __future__ import annotations

import base64

from app.credentials import Secret
from app.probe.sasl import (
    OAuthMechanism,
    login_password,
    login_username,
    oauth_response,
    plain_response,
)
from app.probe.scrub import MASK, MAX_MESSAGE_CHARS, Scrubber, one_line

USER, PASSWORD = "user@example.com", 'pa"ss\\w0rd é'


def test_every_wire_form_is_masked() -> None:
    secret = Secret(PASSWORD)
    scrubber = Scrubber(USER, secret)
    forms = [
        PASSWORD,
        plain_response(USER, secret).decode(),
        login_password(secret).decode(),
        base64.b64encode(PASSWORD.encode()).decode().rstrip("="),
        PASSWORD.replace("\\", "\\\\").replace('"', '\\"'),  # IMAP quoted string
    ]
    for form in forms:
        cleaned = scrubber.clean(f"501 5.5.2 cannot decode {form} sorry")
        assert form not in cleaned
        assert MASK in cleaned
        assert PASSWORD not in cleaned


def test_username_is_not_a_secret() -> None:
    cleaned = Scrubber(USER, Secret("pw123456")).clean(
        f"535 no such user {USER} ({login_username(USER).decode()})"
    )
    assert USER in cleaned


def test_one_line_and_truncated() -> None:
    text = "535-5.7.8 first\r\n535 5.7.8 second\t" + "x" * 1000
    cleaned = Scrubber(USER, Secret("pw-not-there")).clean(text)
    assert "\n" not in cleaned and "\r" not in cleaned and "\t" not in cleaned
    assert len(cleaned) <= MAX_MESSAGE_CHARS
    assert cleaned.startswith("535-5.7.8 first 535 5.7.8 second")


def test_password_at_the_cut_is_masked_before_truncation() -> None:
    password = "SECRETSECRET"
    text = "y" * (MAX_MESSAGE_CHARS - 5) + password
    assert "SECRE" not in Scrubber(USER, Secret(password)).clean(text)


def test_password_split_by_line_break_is_masked() -> None:
    password = "multi\r\nline"
    cleaned = Scrubber(USER, Secret(password)).clean(f"BAD echo {password}")
    assert "multi" not in cleaned and "line" not in cleaned.replace("BAD echo", "")


def test_one_line_collapses_control_characters() -> None:
    assert one_line("a\x00b\x1b[31mc  d\n") == "a b [31mc d"


def test_short_password_masked_as_token_only() -> None:
    scrubber = Scrubber(USER, Secret("x"))
    assert scrubber.clean("the port may expect TLS") == "the port may expect TLS"
    assert scrubber.clean("BAD LOGIN user x") == f"BAD LOGIN user {MASK}"
    assert scrubber.clean('BAD LOGIN "user" "x"') == f'BAD LOGIN "user" "{MASK}"'


def test_oauth_token_blobs_are_masked() -> None:
    # The token sits at an offset inside XOAUTH2/OAUTHBEARER blobs, so its own base64 form
    # does not occur in theirs: each blob needs masking as a whole.
    token = Secret("ya29.a0AfH6SMBx-token_value")
    scrubber = Scrubber(USER, token)
    for mechanism in OAuthMechanism:
        blob = oauth_response(mechanism, USER, token).decode()
        assert base64.b64encode(token.reveal().encode()).decode().rstrip("=") not in blob
        cleaned = scrubber.clean(f"501 5.5.2 cannot decode {blob}")
        assert cleaned == f"501 5.5.2 cannot decode {MASK}"
