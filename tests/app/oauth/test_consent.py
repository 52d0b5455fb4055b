"""OAuth2 browser consent: start gives the authorisation URL with a PKCE challenge; the
callback exchanges the code, saves and tests the account, and sends the browser back."""

import datetime as dt
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from app.credentials import Secret
from app.importing.rows import ACCESS_TOKEN, REFRESH_TOKEN
from app.models import EmailAccount, OAuthConsent
from app.oauth.apps import set_oauth_app
from app.oauth.consent import s256
from app.teams import create_api_key, team_for_key
from tests.app.jobs.doubles import FakeProber
from tests.servers.oauth_server import OAuthServer, running_oauth_server

BACK = "https://app.example.test/connected?from=mailconnect"
EMAIL = "gil@gmail.com"


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def register(services, api_key, server, provider="google") -> int:
    team = team_for_key(services.db, api_key)
    set_oauth_app(services.db, services.cipher, services.clock, team, provider,
                  server.client_id, Secret(server.client_secret), token_url=server.url,
                  authorize_url=f"{server.url}/authorize")
    return team


def start(client, api_key, **body):
    return client.post("/v1/email-accounts/oauth/start", headers={"x-api-key": api_key},
                       json={"provider": "google", "redirectUrl": BACK, **body})


@pytest.fixture
def oauth(services, api_key):
    services.prober = FakeProber()
    with running_oauth_server() as server:
        register(services, api_key, server)
        yield server


def test_start_gives_every_parameter_and_an_s256_challenge(client, api_key, oauth, services):
    answer = start(client, api_key, email=EMAIL)
    assert answer.status_code == 200, answer.json
    url, state = answer.json["payload"]["authorizeUrl"], answer.json["payload"]["state"]
    assert url.startswith(f"{oauth.url}/authorize?")
    params = query(url)
    assert params["response_type"] == "code" and params["client_id"] == oauth.client_id
    assert params["redirect_uri"] == services.settings.oauth_callback
    assert params["redirect_uri"].endswith("/oauth/callback")
    assert params["scope"] == "https://mail.google.com/ openid email"
    assert params["state"] == state and params["login_hint"] == EMAIL
    assert params["code_challenge_method"] == "S256"
    # The challenge is S256 of the verifier kept (encrypted) with the state.
    with services.db.reading() as session:
        kept = session.scalar(select(OAuthConsent))
    verifier = services.cipher.decrypt(kept.code_verifier)["codeVerifier"].reveal()
    assert params["code_challenge"] == s256(verifier) != verifier
    assert 43 <= len(verifier) <= 128
    assert state not in kept.state_hash and kept.code_verifier.find(verifier) == -1


def test_start_refuses_bad_requests_by_name(client, api_key, oauth):
    assert "provider" in start(client, api_key, provider="yahoo").json["message"]
    assert "redirectUrl" in start(client, api_key, redirectUrl="ftp://x.test/").json["message"]
    assert "smtpPort" in start(client, api_key, smtpPort=70000).json["message"]
    no_app = start(client, api_key, provider="microsoft")
    assert no_app.status_code == 422 and "provider" in no_app.json["message"]
    custom = start(client, api_key, provider="custom")
    assert custom.status_code == 422 and "smtpHost" in custom.json["message"]
    assert client.post("/v1/email-accounts/oauth/start", json={}).status_code == 401


def consent(client, api_key, server, email=EMAIL, **body) -> tuple[str, str]:
    """Play the browser: open authorizeUrl, consent as `email`, get the code; the state and
    code. `email` is not sent to start: the id_token names the mailbox."""
    started = start(client, api_key, **body).json["payload"]
    return started["state"], server.authorize(started["authorizeUrl"], email)


def test_callback_saves_tests_and_redirects_and_never_shows_a_token(
        client, api_key, oauth, services, caplog):
    caplog.set_level(logging.DEBUG)
    state, code = consent(client, api_key, oauth)  # no email: the id_token names it
    back = client.get("/oauth/callback", query_string={"code": code, "state": state})
    assert back.status_code == 302
    location = back.headers["Location"]
    assert location.startswith("https://app.example.test/connected?")
    params = query(location)
    assert params["from"] == "mailconnect" and params["status"] == "1"
    [(smtp, _imap)] = services.prober.calls
    assert smtp.host == "smtp.gmail.com" and smtp.password == Secret(oauth.issued[0])
    with services.db.reading() as session:
        account = session.scalar(select(EmailAccount))
    assert str(account.id) == params["accountId"] and account.email == EMAIL
    assert account.team_id == team_for_key(services.db, api_key)
    tokens = services.cipher.decrypt(account.credentials)
    assert tokens[ACCESS_TOKEN] == Secret(oauth.issued[0])
    shown = client.get(f"/v1/email-accounts/{account.id}", headers={"x-api-key": api_key})
    for secret in (oauth.issued[0], tokens[REFRESH_TOKEN].reveal(), code):
        assert secret not in location + shown.get_data(as_text=True) + caplog.text

    # The state was spent: the same callback again is refused, naming the state.
    again = client.get("/oauth/callback", query_string={"code": code, "state": state})
    assert again.status_code == 400 and again.json["message"].startswith("state:")


def test_expired_or_unknown_state_is_refused(client, api_key, oauth, services):
    state, code = consent(client, api_key, oauth, email=EMAIL)
    with services.db.transaction() as session:
        session.execute(update(OAuthConsent).values(
            expires_at=services.clock.now() - dt.timedelta(seconds=1)))
    expired = client.get("/oauth/callback", query_string={"code": code, "state": state})
    assert expired.status_code == 400 and "state" in expired.json["message"]
    unknown = client.get("/oauth/callback", query_string={"code": code, "state": "nope"})
    assert unknown.status_code == 400 and "state" in unknown.json["message"]
    assert services.prober.calls == []


def test_state_is_bound_to_its_team(client, api_key, oauth, services):
    other_key = create_api_key(services.db, services.clock, "globex").key
    register(services, other_key, oauth)
    mine = start(client, api_key, email=EMAIL).json["payload"]
    theirs = start(client, other_key, email=EMAIL).json["payload"]["state"]
    # The other team's state with a code consented through this team's URL: the PKCE
    # challenge differs, so the exchange fails and nothing is saved.
    code = oauth.authorize(mine["authorizeUrl"], EMAIL)
    stolen = client.get("/oauth/callback", query_string={"code": code, "state": theirs})
    assert stolen.status_code == 302
    assert query(stolen.headers["Location"])["error"] == "token_exchange_failed"
    with services.db.reading() as session:
        assert session.scalar(select(EmailAccount)) is None
    # This team's own state: the account is this team's, and the other team cannot see it.
    code = oauth.authorize(mine["authorizeUrl"], EMAIL)
    back = client.get("/oauth/callback", query_string={"code": code, "state": mine["state"]})
    account_id = query(back.headers["Location"])["accountId"]
    assert client.get(f"/v1/email-accounts/{account_id}",
                      headers={"x-api-key": api_key}).status_code == 200
    assert client.get(f"/v1/email-accounts/{account_id}",
                      headers={"x-api-key": other_key}).status_code == 404


def test_wrong_verifier_or_declined_consent_redirect_with_an_error(client, api_key, oauth,
                                                                     services):
    state, code = consent(client, api_key, oauth, email=EMAIL)
    email, _challenge, redirect_uri = oauth.codes[code]
    oauth.codes[code] = (email, s256("a-different-verifier"), redirect_uri)
    refused = client.get("/oauth/callback", query_string={"code": code, "state": state})
    assert refused.status_code == 302
    assert query(refused.headers["Location"])["error"] == "token_exchange_failed"

    asked = start(client, api_key, email=EMAIL).json["payload"]
    state, code = asked["state"], oauth.authorize(asked["authorizeUrl"], "someone.else@gmail.com")
    mismatch = client.get("/oauth/callback", query_string={"code": code, "state": state})
    assert query(mismatch.headers["Location"])["error"] == "email_mismatch"

    state = start(client, api_key, email=EMAIL).json["payload"]["state"]
    declined = client.get("/oauth/callback",
                          query_string={"error": "access_denied", "state": state})
    assert declined.status_code == 302
    assert query(declined.headers["Location"])["error"] == "access_denied"
    assert services.prober.calls == []


@pytest.mark.integration
def test_consent_to_a_real_xoauth2_login(client, api_key, real_services, team, mail_server):
    if mail_server.tokens is None:
        pytest.skip("needs Dovecot's oauth2 passdb")  # pymap; CI requires Dovecot
    email = "alice@example.test"
    with running_oauth_server(OAuthServer(mint=mail_server.tokens.mint)) as server:
        register(real_services, api_key, server, provider="custom")
        state, code = consent(client, api_key, server, email=email, provider="custom",
                              smtpHost="localhost", smtpPort=mail_server.submission_port,
                              smtpEncryption="starttls", imapHost="localhost",
                              imapPort=mail_server.imaps_port, imapEncryption="ssl")
        back = client.get("/oauth/callback", query_string={"code": code, "state": state})
    params = query(back.headers["Location"])
    assert params["status"] == "1", params
    shown = client.get(f"/v1/email-accounts/{params['accountId']}",
                       headers={"x-api-key": api_key}).json["payload"]
    assert shown["email"] == email


@pytest.mark.parametrize("refusal", ["host_busy", "team_login_quota"])
def test_a_consent_that_cannot_be_tested_now_is_kept_untested(client, api_key, oauth, services,
                                                              monkeypatch, refusal):
    """The code is spent once exchanged: its tokens are saved, untested, never dropped."""
    from app.accounts.slots import HostBusy
    from app.jobs.loginquota import QuotaExceeded
    from app.web import oauth as oauth_web

    def cannot_test(*_args, **_kwargs):
        if refusal == "host_busy":
            raise HostBusy(["smtp.gmail.com"], 5)
        raise QuotaExceeded(60.0)

    monkeypatch.setattr(oauth_web, "connect_account", cannot_test)
    state, code = consent(client, api_key, oauth)
    params = query(client.get("/oauth/callback",
                              query_string={"code": code, "state": state}).headers["Location"])
    assert params["error"] == refusal and params["status"] == "0"
    with services.db.reading() as session:
        account = session.scalar(select(EmailAccount))
    assert str(account.id) == params["accountId"] and account.status == 0
    assert account.smtp_result == "skipped"
    assert services.cipher.decrypt(account.credentials)[ACCESS_TOKEN] == Secret(oauth.issued[0])


def test_retention_forgets_expired_consents_only(client, api_key, oauth, services):
    from app.jobs.retention import apply_retention

    start(client, api_key, email=EMAIL)  # live
    start(client, api_key, email="old@gmail.com")
    with services.db.transaction() as session:
        session.execute(update(OAuthConsent).where(OAuthConsent.email == "old@gmail.com")
                        .values(expires_at=services.clock.now() - dt.timedelta(seconds=1)))
    result = apply_retention(services.db, services.clock, services.store, 7)
    assert result.consents_deleted == 1
    with services.db.reading() as session:
        assert session.scalars(select(OAuthConsent.email)).all() == [EMAIL]
