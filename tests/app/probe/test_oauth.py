"""OAuth2 logins (XOAUTH2, OAUTHBEARER): against the real Dovecot with its oauth2 passdb, and
against the scripted servers where the exact bytes on the wire matter.

Which code each situation gets is also in the scenario matrix; these tests add what the matrix
cannot: the token minted and revoked on a shared Dovecot, wrong-owner tokens, the mechanism
preference, SASL-IR versus a continuation, the error-challenge answers, and scrubbing.
"""

from __future__ import annotations

import base64

import pytest

from app.credentials import Secret
from app.probe import AuthMethod, Encryption, Endpoint, ErrorCode, Prober, ProtocolResult
from app.probe.scrub import MASK
from tests.app.probe.conftest import USER
from tests.servers.dovecot import DovecotServer
from tests.servers.faults import scripted_imap, scripted_smtp

SSL, STARTTLS, NONE = Encryption.SSL, Encryption.STARTTLS, Encryption.NONE
ALICE = "alice@example.test"  # a mailbox on the shared Dovecot (tests/conftest.py)
TOKEN = "ya29.a0-test-token-4f9c2e"  # what the scripted servers accept for USER
XOAUTH2_BLOB = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode()
OAUTHBEARER_BLOB = base64.b64encode(
    f"n,a={USER},\x01auth=Bearer {TOKEN}\x01\x01".encode()
).decode()
ACK_OAUTHBEARER = base64.b64encode(b"\x01").decode()  # "AQ==", RFC 7628's answer to an error


def oauth_endpoint(port: int, encryption: Encryption, token: str, user: str = USER) -> Endpoint:
    return Endpoint("localhost", port, encryption, user, Secret(token), AuthMethod.OAUTH2)


def smtp(prober: Prober, endpoint: Endpoint) -> ProtocolResult:
    return prober.probe_sync(endpoint, None).smtp


def imap(prober: Prober, endpoint: Endpoint) -> ProtocolResult:
    return prober.probe_sync(None, endpoint).imap


# --- the real Dovecot ---------------------------------------------------------------------------

DOVECOT_SIDES = [
    ("smtp", "submissions_port", SSL),
    ("smtp", "submission_port", STARTTLS),
    ("imap", "imaps_port", SSL),
    ("imap", "imap_port", STARTTLS),
]


@pytest.fixture
def dovecot(mail_server: DovecotServer) -> DovecotServer:
    if mail_server.tokens is None:
        pytest.skip("OAuth2 needs Dovecot (the pymap fallback has no oauth2 passdb)")
    return mail_server


def dovecot_probe(prober: Prober, server: DovecotServer, side: tuple, token: str,
                  user: str = ALICE) -> ProtocolResult:
    protocol, port, encryption = side
    endpoint = oauth_endpoint(getattr(server, port), encryption, token, user)
    return (smtp if protocol == "smtp" else imap)(prober, endpoint)


@pytest.mark.parametrize("side", DOVECOT_SIDES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_valid_token_logs_in_at_dovecot(prober, dovecot, side) -> None:
    token = dovecot.tokens.mint(ALICE)
    asked = dovecot.tokens.asked
    result = dovecot_probe(prober, dovecot, side, token)
    assert result.ok, result
    assert dovecot.tokens.asked > asked  # Dovecot checked the token with us: no password path


@pytest.mark.parametrize("side", DOVECOT_SIDES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_revoked_token_is_refused_after_the_error_challenge(prober, dovecot, side) -> None:
    token = dovecot.tokens.mint(ALICE)
    dovecot.tokens.revoke(token)
    result = dovecot_probe(prober, dovecot, side, token)
    # Without an answer to the JSON error challenge Dovecot never sends its refusal, and the
    # probe would end as connection_timeout at the deadline instead.
    assert result.error_code == ErrorCode.OAUTH_TOKEN_INVALID, result
    assert "token refused: status 401" in (result.error or "")
    assert token not in (result.error or "")


def test_token_of_another_mailbox_is_refused(prober, dovecot) -> None:
    bobs = dovecot.tokens.mint("bob@example.test")
    result = dovecot_probe(prober, dovecot, DOVECOT_SIDES[2], bobs)  # used as alice's
    assert result.error_code == ErrorCode.OAUTH_TOKEN_INVALID, result


# --- the exact dialogue, on scripted servers ------------------------------------------------------


def test_smtp_prefers_xoauth2_with_an_initial_response(prober) -> None:
    with scripted_smtp(auth_mechanisms="PLAIN OAUTHBEARER XOAUTH2",
                       users={USER: TOKEN}) as server:
        assert smtp(prober, oauth_endpoint(server.port, NONE, TOKEN)).ok
    assert f"AUTH XOAUTH2 {XOAUTH2_BLOB}\r\n" in server.received_text()
    assert server.logins == [(USER, TOKEN)]


def test_smtp_uses_oauthbearer_when_only_it_is_offered(prober) -> None:
    with scripted_smtp(auth_mechanisms="PLAIN OAUTHBEARER", users={USER: TOKEN}) as server:
        assert smtp(prober, oauth_endpoint(server.port, NONE, TOKEN)).ok
    assert f"AUTH OAUTHBEARER {OAUTHBEARER_BLOB}\r\n" in server.received_text()


@pytest.mark.parametrize(("mechanism", "ack"), [("XOAUTH2", ""), ("OAUTHBEARER", ACK_OAUTHBEARER)])
def test_smtp_refused_token_answers_the_error_challenge(prober, mechanism, ack) -> None:
    with scripted_smtp(auth_mechanisms=mechanism, users={USER: "another"}) as server:
        result = smtp(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.OAUTH_TOKEN_INVALID
    assert result.error == "535 5.7.8 Bad credentials (token refused: status 401, scope mail)"
    lines = server.received_text().split("\r\n")
    auth = next(i for i, line in enumerate(lines) if line.startswith("AUTH "))
    assert lines[auth + 1] == ack


def test_smtp_no_oauth_mechanism_sends_no_token(prober) -> None:
    with scripted_smtp(auth_mechanisms="PLAIN LOGIN") as server:
        result = smtp(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert "XOAUTH2 or OAUTHBEARER (server offers: PLAIN LOGIN)" in (result.error or "")
    assert "AUTH" not in server.received_text().replace("EHLO", "")


def test_smtp_throttling_during_oauth_stays_throttling(prober) -> None:
    replies = {"AUTH": "454 4.7.0 Too many login attempts, please try again later."}
    with scripted_smtp(replies, auth_mechanisms="XOAUTH2") as server:
        result = smtp(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.SERVER_THROTTLED


OAUTH_CAPS = ("IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER")


@pytest.mark.parametrize("sasl_ir", [True, False])
def test_imap_xoauth2_with_and_without_sasl_ir(prober, sasl_ir: bool) -> None:
    caps = (*OAUTH_CAPS, "SASL-IR") if sasl_ir else OAUTH_CAPS
    with scripted_imap({USER: TOKEN}, capabilities=caps) as server:
        assert imap(prober, oauth_endpoint(server.port, NONE, TOKEN)).ok
    received = server.received_text()
    if sasl_ir:
        assert f"a1 AUTHENTICATE XOAUTH2 {XOAUTH2_BLOB}\r\n" in received
    else:
        assert f"a1 AUTHENTICATE XOAUTH2\r\n{XOAUTH2_BLOB}\r\n" in received
    assert server.logins == [(USER, TOKEN)]


@pytest.mark.parametrize(
    ("caps", "ack"),
    [(("IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR"), ""),
     (("IMAP4rev1", "AUTH=OAUTHBEARER", "SASL-IR"), ACK_OAUTHBEARER)],
    ids=["xoauth2", "oauthbearer"],
)
def test_imap_refused_token_answers_the_error_challenge(prober, caps, ack) -> None:
    with scripted_imap({USER: "another"}, capabilities=caps) as server:
        result = imap(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.OAUTH_TOKEN_INVALID
    assert result.error == (
        "NO [AUTHENTICATIONFAILED] Failed. (token refused: status 401, scope mail)"
    )
    lines = server.received_text().split("\r\n")
    auth = next(i for i, line in enumerate(lines) if "AUTHENTICATE" in line)
    assert lines[auth + 1] == ack


def test_imap_no_oauth_mechanism_sends_no_token(prober) -> None:
    with scripted_imap({USER: TOKEN}, capabilities=("IMAP4rev1", "AUTH=PLAIN")) as server:
        result = imap(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.AUTH_MECHANISM_UNSUPPORTED
    assert "(server offers: PLAIN)" in (result.error or "")
    assert "AUTHENTICATE" not in server.received_text()
    assert "LOGIN" not in server.received_text()


@pytest.mark.parametrize("caps", [("IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR"),
                                  ("IMAP4rev1", "AUTH=OAUTHBEARER")])
def test_an_echoed_blob_is_never_stored(prober, caps) -> None:
    replies = {"AUTHENTICATE": "NO cannot decode {received}"}
    with scripted_imap({USER: TOKEN}, capabilities=caps, replies=replies) as server:
        result = imap(prober, oauth_endpoint(server.port, NONE, TOKEN))
    assert result.error_code == ErrorCode.OAUTH_TOKEN_INVALID
    assert MASK in (result.error or "")
    for secret in (TOKEN, XOAUTH2_BLOB, OAUTHBEARER_BLOB):
        assert secret not in (result.error or "")
    assert "cannot decode" in (result.error or "")
