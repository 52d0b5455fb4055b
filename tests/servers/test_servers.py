"""The test mail servers themselves: real logins over every listener they offer."""

from __future__ import annotations

import imaplib
import json
import smtplib
import ssl
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.servers import dovecot
from tests.servers.dovecot import (
    REQUIRE_DOVECOT_ENV,
    DovecotServer,
    dovecot_available,
    start_dovecot,
    start_mail_server,
)
from tests.servers.introspection import introspection_server
from tests.servers.pymap_imap import pymap_available, start_pymap
from tests.servers.tls import TestPKI as PKI  # aliased: pytest would collect Test*
from tests.servers.tls import make_pki

pytestmark = pytest.mark.integration

USERS = {f"user{i}@example.com": f"pw-{i}-secret" for i in range(60)}
USERS["alice@example.com"] = "alice pass with spaces"
USERS["bob@example.com"] = 'bob "quoted" p\\ss'
USERS["carol@example.com"] = "carol-pässwörd"
GOOD_USER, GOOD_PASSWORD = "alice@example.com", USERS["alice@example.com"]

# Every backend this machine can run is exercised; CI (Dovecot required) always has
# Dovecot, and pymap wherever it is installed.
IMAP_BACKENDS = [
    *(["dovecot"] if dovecot_available() else []),
    *(["pymap"] if pymap_available() else []),
]
SMTP_BACKENDS = ["dovecot"] if dovecot_available() else []


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pki):
    """One running server per backend for the whole module, started on first use."""
    from contextlib import ExitStack

    started: dict[str, DovecotServer] = {}
    with ExitStack() as stack:

        def get(backend: str) -> DovecotServer:
            if backend not in started:
                start = start_dovecot if backend == "dovecot" else start_pymap
                workdir = tmp_path_factory.mktemp(backend)
                started[backend] = stack.enter_context(start(workdir, pki, USERS))
            return started[backend]

        yield get


@pytest.fixture
def ctx(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


def _imap_connect(server: DovecotServer, ctx: ssl.SSLContext, implicit: bool) -> imaplib.IMAP4:
    if implicit:
        return imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx, timeout=10)
    conn = imaplib.IMAP4(server.host, server.imap_port, timeout=10)
    assert "STARTTLS" in conn.capabilities
    conn.starttls(ssl_context=ctx)
    return conn


@pytest.mark.parametrize("backend", IMAP_BACKENDS)
@pytest.mark.parametrize("implicit", [True, False], ids=["imaps", "imap-starttls"])
def test_imap_login_and_examine(servers, ctx, backend, implicit):
    server = servers(backend)
    assert server.is_dovecot == (backend == "dovecot")
    conn = _imap_connect(server, ctx, implicit)
    try:
        typ, _ = conn.login(GOOD_USER, GOOD_PASSWORD)
        assert typ == "OK"
        typ, data = conn.select("INBOX", readonly=True)  # readonly: EXAMINE
        assert typ == "OK", data
        assert data == [b"0"]
    finally:
        conn.logout()


@pytest.mark.parametrize("backend", IMAP_BACKENDS)
@pytest.mark.parametrize("implicit", [True, False], ids=["imaps", "imap-starttls"])
@pytest.mark.parametrize("user", [GOOD_USER, "nobody@example.com"], ids=["wrong-pw", "no-user"])
def test_imap_wrong_password_fails_fast(servers, ctx, backend, implicit, user):
    server = servers(backend)
    conn = _imap_connect(server, ctx, implicit)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            conn.login(user, "wrong password")
    finally:
        conn.shutdown()


@pytest.mark.parametrize("backend", IMAP_BACKENDS)
@pytest.mark.parametrize("user", ["bob@example.com", "carol@example.com"])
def test_imap_authenticate_plain_quotes_and_utf8(servers, ctx, backend, user):
    server = servers(backend)
    conn = _imap_connect(server, ctx, implicit=True)
    try:
        response = f"\0{user}\0{USERS[user]}".encode()
        typ, _ = conn.authenticate("PLAIN", lambda _challenge: response)
        assert typ == "OK"
    finally:
        conn.logout()


@pytest.mark.parametrize("backend", SMTP_BACKENDS)
@pytest.mark.parametrize("user", ["bob@example.com", "carol@example.com"])
def test_smtp_auth_plain_quotes_and_utf8(servers, ctx, backend, user):
    import base64

    server = servers(backend)
    with _smtp_connect(server, ctx, implicit=True) as conn:
        token = base64.b64encode(f"\0{user}\0{USERS[user]}".encode()).decode()
        code, _ = conn.docmd("AUTH", f"PLAIN {token}")
        assert code == 235


@pytest.mark.parametrize("backend", IMAP_BACKENDS)
def test_untrusted_client_context_rejects_server_cert(servers, backend):
    server = servers(backend)
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            server.host, server.imaps_port, ssl_context=ssl.create_default_context(), timeout=10
        )


def _smtp_connect(server: DovecotServer, ctx: ssl.SSLContext, implicit: bool) -> smtplib.SMTP:
    if implicit:
        return smtplib.SMTP_SSL(server.host, server.submissions_port, context=ctx, timeout=10)
    conn = smtplib.SMTP(server.host, server.submission_port, timeout=10)
    conn.ehlo()
    assert conn.has_extn("starttls")
    conn.starttls(context=ctx)
    conn.ehlo()
    return conn


@pytest.mark.parametrize("backend", SMTP_BACKENDS)
@pytest.mark.parametrize("implicit", [True, False], ids=["submissions", "submission-starttls"])
def test_smtp_auth_good(servers, ctx, backend, implicit):
    server = servers(backend)
    conn = _smtp_connect(server, ctx, implicit)
    try:
        code, _ = conn.login(GOOD_USER, GOOD_PASSWORD)
        assert code == 235
        assert conn.noop()[0] == 250  # the session survives: the relay sink answered
    finally:
        conn.quit()


@pytest.mark.parametrize("backend", SMTP_BACKENDS)
@pytest.mark.parametrize("implicit", [True, False], ids=["submissions", "submission-starttls"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_auth_wrong_password(servers, ctx, backend, implicit, mechanism):
    server = servers(backend)
    conn = _smtp_connect(server, ctx, implicit)
    try:
        conn.user, conn.password = GOOD_USER, "wrong password"
        authobject = conn.auth_plain if mechanism == "PLAIN" else conn.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
            conn.auth(mechanism, authobject)
        assert excinfo.value.smtp_code == 535
    finally:
        conn.close()


@pytest.mark.parametrize("backend", SMTP_BACKENDS)
def test_submission_relays_to_the_sink(servers, ctx, backend):
    server = servers(backend)
    with _smtp_connect(server, ctx, implicit=True) as conn:
        conn.login(GOOD_USER, GOOD_PASSWORD)
        conn.sendmail(GOOD_USER, ["someone@example.net"], "Subject: hi\r\n\r\nhello\r\n")
    assert server.relayed[-1].rcpt_tos == ["someone@example.net"]
    assert b"hello" in server.relayed[-1].content


@pytest.mark.parametrize("backend", IMAP_BACKENDS)
def test_many_concurrent_imap_logins(servers, ctx, backend):
    server = servers(backend)
    users = list(USERS.items())[:50]
    barrier = threading.Barrier(len(users), timeout=30)

    def login(item):
        user, password = item
        conn = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx, timeout=30)
        try:
            conn.login(user, password)
            conn.select("INBOX", readonly=True)
            barrier.wait()  # all sessions are open at once
        finally:
            conn.logout()
        return user

    with ThreadPoolExecutor(len(users)) as pool:
        assert sorted(pool.map(login, users)) == sorted(u for u, _ in users)


def test_dovecot_start_failure_raises_with_log(tmp_path, pki):
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    broken = PKI(
        ca_file=pki.ca_file,
        good=type(pki.good)(tmp_path / "missing.crt", tmp_path / "missing.key"),
        self_signed=pki.self_signed,
        expired=pki.expired,
        wrong_host=pki.wrong_host,
    )
    with pytest.raises(RuntimeError, match=r"missing\.crt"):
        with start_dovecot(tmp_path / "dc", broken, {"a": "b"}):
            pass


def test_start_mail_server_requires_dovecot_when_told(monkeypatch, tmp_path, pki):
    monkeypatch.setattr(dovecot, "dovecot_available", lambda: False)
    monkeypatch.setenv(REQUIRE_DOVECOT_ENV, "1")
    with pytest.raises(RuntimeError, match=REQUIRE_DOVECOT_ENV):
        with start_mail_server(tmp_path, pki, {"a": "b"}):
            pass


def test_start_mail_server_prefers_dovecot(tmp_path, pki, ctx):
    if not (dovecot_available() or pymap_available()):
        pytest.skip("neither dovecot nor pymap is installed")
    with start_mail_server(tmp_path, pki, {"carol": "pw"}) as server:
        assert server.is_dovecot == dovecot_available()
        assert (server.submission_port is not None) == server.is_dovecot
        conn = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx, timeout=10)
        assert conn.login("carol", "pw")[0] == "OK"
        conn.logout()


def _introspect(url: str, token: str) -> dict:
    body = urllib.parse.urlencode({"token": token}).encode()
    with urllib.request.urlopen(url, data=body, timeout=5) as answer:
        return json.load(answer)


def test_introspection_answers_for_minted_tokens_until_revoked() -> None:
    with introspection_server() as tokens:
        token = tokens.mint("alice@example.test")
        assert _introspect(tokens.url, token) == {"active": True, "email": "alice@example.test"}
        assert _introspect(tokens.url, "never-minted") == {"active": False}
        tokens.revoke(token)
        assert _introspect(tokens.url, token) == {"active": False}
        assert tokens.asked == 3
