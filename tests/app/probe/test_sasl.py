"""SASL client responses for OAuth2: the exact XOAUTH2 and OAUTHBEARER bytes, the mechanism
preference, and what a refused token's JSON error challenge becomes in the stored message."""

from __future__ import annotations

import base64

from app.credentials import Secret
from app.probe.sasl import (
    OAUTH_ERROR_ACK,
    OAuthMechanism,
    oauth_error_status,
    oauth_response,
    pick_oauth_mechanism,
)

X, BEARER = OAuthMechanism.XOAUTH2, OAuthMechanism.OAUTHBEARER


def decoded(mechanism: OAuthMechanism, user: str, token: str) -> bytes:
    return base64.b64decode(oauth_response(mechanism, user, Secret(token)))


def test_xoauth2_is_googles_and_microsofts_format() -> None:
    assert decoded(X, "a@example.com", "tok") == b"user=a@example.com\x01auth=Bearer tok\x01\x01"


def test_oauthbearer_is_rfc_7628_with_the_authzid_escaped() -> None:
    assert decoded(BEARER, "a@example.com", "tok") == (
        b"n,a=a@example.com,\x01auth=Bearer tok\x01\x01"
    )
    assert decoded(BEARER, "a,b=c@example.com", "t").startswith(b"n,a=a=2Cb=3Dc@example.com,")


def test_xoauth2_is_preferred_and_oauthbearer_is_the_fallback() -> None:
    assert pick_oauth_mechanism({"PLAIN", "OAUTHBEARER", "XOAUTH2"}) == X
    assert pick_oauth_mechanism({"PLAIN", "OAUTHBEARER"}) == BEARER
    assert pick_oauth_mechanism({"PLAIN", "LOGIN"}) is None


def test_error_challenge_answers() -> None:
    assert OAUTH_ERROR_ACK[X] == b""
    assert base64.b64decode(OAUTH_ERROR_ACK[BEARER]) == b"\x01"


def test_error_status_from_google_and_dovecot_challenges() -> None:
    google = base64.b64encode(
        b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
    ).decode()
    assert oauth_error_status(google) == "status 400, scope https://mail.google.com/"
    dovecot = base64.b64encode(b'{"status":"invalid_token"}').decode()
    assert oauth_error_status(dovecot) == "status invalid_token"


def test_error_status_of_garbage_says_so() -> None:
    for challenge in ("not base64!", base64.b64encode(b"[1, 2]").decode(), "",
                      base64.b64encode(b"\xff\xfe").decode()):
        assert oauth_error_status(challenge) == "an undecodable error challenge"
